from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.services import token_create, token_revoke, user_create, user_set_role
from apps.projects.models import Project
from apps.projects.services import membership_set


class Command(BaseCommand):
    help = ("Create an API token for USERNAME and print it (the last line of output; only its hash is kept, "
            "so this is the one time it is shown), optionally creating the user.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create", action="store_true", help="create the user if it does not exist")
        parser.add_argument("--role", choices=Role.values, help="account role (annotator, lead, admin)")
        parser.add_argument("--project", type=int, help="also make the user a member of this project with --role")
        parser.add_argument("--expires-in-days", type=float, metavar="N",
                            help="the token stops working after N days (default: never)")
        parser.add_argument("--revoke-others", action="store_true",
                            help="delete the user's earlier tokens first (rotation)")

    def handle(self, *args, username, create, role, project, expires_in_days, revoke_others, **options):
        if expires_in_days is not None and expires_in_days <= 0:
            raise CommandError("--expires-in-days must be positive.")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create:
                raise CommandError(f"No user {username!r}; pass --create to create it.")
            user = user_create(username=username, role=role or Role.ANNOTATOR)
            self.stdout.write(f"created user {username} with role {role or Role.ANNOTATOR}")
        elif role:
            user_set_role(user=user, role=role)
        if project is not None:
            proj = Project.objects.filter(pk=project).first()
            if proj is None:
                raise CommandError(f"No project with id {project}.")
            membership_set(project=proj, user=user, role=role or Role.ANNOTATOR)
            self.stdout.write(f"{username} is {role or Role.ANNOTATOR} of project {proj.pk} ({proj.name})")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days is not None else None
        revoked = token_revoke(user=user) if revoke_others else 0
        key = token_create(user=user, expires_at=expires_at)
        until = f"until {expires_at.isoformat(timespec='seconds')}" if expires_at else "without expiry"
        others = f"{revoked} earlier token(s) revoked" if revoke_others else "earlier tokens keep working"
        self.stdout.write(f"new API token {key[:8]}... for {username}, valid {until}; {others}")
        self.stdout.write(key)
