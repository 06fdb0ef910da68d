from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import Role
from apps.accounts.services import token_get_or_create, user_create, user_set_role


class Command(BaseCommand):
    help = "Print an API token for USERNAME (last line of output), optionally creating the user."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create", action="store_true", help="create the user if it does not exist")
        parser.add_argument("--role", choices=Role.values, help="account role (annotator, lead, admin)")
        parser.add_argument("--project", type=int, help="also make the user a member of this project with --role")

    def handle(self, *args, username, create, role, project, **options):
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
            from apps.projects.models import Project
            from apps.projects.services import membership_set

            proj = Project.objects.filter(pk=project).first()
            if proj is None:
                raise CommandError(f"No project with id {project}.")
            membership_set(project=proj, user=user, role=role or Role.ANNOTATOR)
            self.stdout.write(f"{username} is {role or Role.ANNOTATOR} of project {proj.pk} ({proj.name})")
        self.stdout.write(token_get_or_create(user=user))
