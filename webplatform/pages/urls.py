"""Page routes."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("consent/<slug:purpose>", views.consent, name="page-consent"),
    path("upload", views.upload, name="page-upload"),
    path("photos/<uuid:photo_id>/delete", views.delete_photo, name="page-delete-photo"),
    path("account/erase", views.erase_account, name="page-erase"),
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
