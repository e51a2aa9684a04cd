"""Name keys recomputed for the full Unicode confusables skeleton (UTS #39, accounts/confusables.py).

The keys were hashes of a skeleton built from a small hand table; the new skeleton maps many more
look-alikes together, so every stored key changes. Existing names that now look alike keep working: as in
0002, only the older account holds the key, so neither can be registered again beside the other.
"""

from django.db import migrations


def rekey(apps, schema_editor):
    from webplatform.accounts.services import username_key

    Account = apps.get_model("accounts", "Account")
    accounts = list(Account.objects.select_related("user").order_by("pk"))
    Account.objects.update(name_key=None)  # no old key may block a new one while they are reassigned
    seen: set[str] = set()
    for account in accounts:
        key = username_key(account.user.username)
        account.name_key = None if key in seen else key
        account.save(update_fields=["name_key"])
        seen.add(key)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_ux_email_verified")]

    operations = [migrations.RunPython(rekey, migrations.RunPython.noop)]
