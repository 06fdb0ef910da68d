"""The migration to hashed tokens: a plain DRF token issued before it still authenticates after it, and
no key is left in the clear."""
import hashlib
import secrets

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

PLAIN_TABLE = "authtoken_token"


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def test_plain_tokens_are_hashed_and_keep_working(transactional_db, client):
    from apps.accounts.services import user_create

    lead = user_create(username="old-client", role="lead")
    _migrate([("accounts", "0001_initial")])
    # The table rest_framework.authtoken had (its 0001..0004 migrations), with a key in the clear.
    key = secrets.token_hex(20)
    with connection.cursor() as cursor:
        cursor.execute(f"""CREATE TABLE {PLAIN_TABLE} (
            key varchar(40) PRIMARY KEY, created timestamp with time zone NOT NULL,
            user_id integer NOT NULL UNIQUE REFERENCES auth_user(id))""")
        cursor.execute(f"INSERT INTO {PLAIN_TABLE} (key, created, user_id) VALUES (%s, '2026-01-02T03:04:05Z', %s)",
                       [key, lead.id])
        cursor.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001_initial', now())")

    leaf = MigrationExecutor(connection).loader.graph.leaf_nodes("accounts")
    _migrate(leaf)

    from apps.accounts.models import ApiToken

    assert PLAIN_TABLE not in connection.introspection.table_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone()[0] == 0
    token = ApiToken.objects.get(user=lead)
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest() and token.prefix == key[:8]
    assert token.created_at.isoformat() == "2026-01-02T03:04:05+00:00" and token.expires_at is None
    r = client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}")
    assert r.status_code == 200, r.content


def test_a_database_without_the_plain_table_migrates(transactional_db):
    _migrate([("accounts", "0001_initial")])
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes("accounts"))
    assert "accounts_apitoken" in connection.introspection.table_names()
