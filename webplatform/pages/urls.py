"""Page routes: end users, consent centre, erasure status, officer console."""

from django.contrib.auth import views as auth_views
from django.urls import path

from webplatform.accounts.forms import SignInForm

from . import officer, recovery, views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup", views.signup, name="signup"),
    # The sign-in form checks the login limits first, so a locked sign-in says so instead of "wrong password".
    path("login/", auth_views.LoginView.as_view(template_name="login.html", authentication_form=SignInForm),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Account recovery (pages/recovery.py): Django's reset views; mail only to confirmed addresses.
    path("password-reset/", recovery.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent", recovery.PasswordResetSentView.as_view(), name="password_reset_done"),
    path("password-reset/<str:uidb64>/<str:token>/", recovery.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password-reset/done", recovery.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("account", recovery.account, name="page-account"),
    path("account/verify-email/<str:token>", recovery.email_verify_page, name="email-verify"),
    path("upload", views.upload, name="page-upload"),
    path("photos/<uuid:photo_id>", views.photo, name="page-photo"),
    path("photos/<uuid:photo_id>/thumb", views.photo_thumb, name="page-photo-thumb"),
    path("photos/<uuid:photo_id>/age", views.age, name="page-age"),
    path("photos/<uuid:photo_id>/delete", views.photo_delete_page, name="page-delete-photo"),
    path("results/<uuid:job_id>/thumb", views.result_thumb, name="page-result-thumb"),
    path("training-photo", views.training_photo, name="page-training-photo"),
    path("consents", views.consents, name="consents"),
    path("consents/<slug:purpose>", views.consent_change_page, name="page-consent"),
    path("policies/<slug:purpose>/v<int:version>", views.policy, name="policy"),
    path("receipts/<uuid:receipt_id>", views.receipt, name="receipt"),
    path("receipts/<uuid:receipt_id>.json", views.receipt_download, name="receipt-download"),
    path("privacy", views.privacy, name="privacy"),
    path("account/erase", views.erase_account, name="page-erase"),
    path("erasure/<str:receipt_key>", views.erasure_page, name="erasure-page"),
    path("officer/", officer.dashboard, name="officer-dashboard"),
    path("officer/audit", officer.audit, name="officer-audit"),
    path("officer/audit/verify", officer.audit_verify_page, name="officer-audit-verify"),
    path("officer/runs", officer.training_runs, name="officer-runs"),
]
