"""The operator's shell commands, against REDIS_URL, with no HTTP (DESIGN.md):

    python -m app.admin create-tenant NAME [--quota NAME=VALUE ...]   prints the key
    python -m app.admin list-tenants
    python -m app.admin create-key TENANT                             prints the key
    python -m app.admin revoke-key KEY_ID
    python -m app.admin set-quota TENANT NAME=VALUE [NAME=VALUE ...]  VALUE "default" resets

TENANT is a tenant's id or its name. A key is printed once, on stdout alone, so that
``KEY=$(python -m app.admin create-key alice)`` works; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from app.settings import Settings
from app.store.base import UNREACHABLE
from app.store.tenants import (
    QUOTAS,
    QuotaChanges,
    Tenant,
    TenantExists,
    TenantStore,
    check_tenant_name,
    default_quotas,
)


class CommandError(Exception):
    """A refusal to print for the operator (exit code 1)."""


def _quota_changes(pairs: Sequence[str]) -> QuotaChanges:
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in QUOTAS:
            raise CommandError(
                f"--quota wants NAME=VALUE with NAME one of {', '.join(QUOTAS)}; got {pair!r}"
            )
        if value == "default":
            changes[name] = None
            continue
        try:
            changes[name] = json.loads(value)
        except ValueError:
            raise CommandError(f"quota {name}: {value!r} is not a number") from None
    try:
        return QuotaChanges.model_validate(changes)
    except ValidationError as exc:
        problems = "; ".join(
            f"{e['loc'][0]}: {e['msg'].lower()}, got {json.dumps(e.get('input'))}"
            for e in exc.errors()
        )
        raise CommandError(f"invalid quotas: {problems}") from None


def _tenant(tenants: TenantStore, id_or_name: str) -> Tenant:
    tenant = tenants.find_tenant(id_or_name)
    if tenant is None:
        raise CommandError(f"no tenant with the id or name {id_or_name!r}")
    return tenant


def _plain(value: int | float) -> str:
    return str(value) if isinstance(value, int) or not value.is_integer() else str(int(value))


def _describe(tenant: Tenant, defaults: dict[str, Any], keys: list[dict[str, str]]) -> str:
    quotas = tenant.quotas(defaults)
    shown = ", ".join(
        f"{name}={_plain(quotas[name])}{'*' if name in tenant.overrides else ''}"
        for name in QUOTAS
    )
    key_list = ", ".join(f"{k['key_id']} ({k['prefix']}...)" for k in keys) or "no keys"
    return f"{tenant.id}  {tenant.name}  created {tenant.created_at}\n  quotas: {shown}\n" \
           f"  keys: {key_list}"


def run(args: argparse.Namespace, tenants: TenantStore, settings: Settings) -> int:
    out, err = sys.stdout, sys.stderr
    if args.command == "create-tenant":
        try:
            check_tenant_name(args.name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            tenant, api_key, key_id = tenants.create_tenant(
                args.name, _quota_changes(args.quota)
            )
        except TenantExists as exc:
            raise CommandError(f"{exc}; make it another key with create-key") from None
        print(f"tenant {tenant.name} ({tenant.id}), key {key_id}; the key, shown once:",
              file=err)
        print(api_key, file=out)
    elif args.command == "list-tenants":
        defaults = default_quotas(settings)
        listed = tenants.list_tenants()
        for tenant in listed:
            print(_describe(tenant, defaults, tenants.list_keys(tenant.id)), file=out)
        print(f"{len(listed)} tenant(s); * marks a quota set for that tenant", file=err)
    elif args.command == "create-key":
        tenant = _tenant(tenants, args.tenant)
        key_id, api_key = tenants.create_key(tenant.id)
        print(f"key {key_id} for tenant {tenant.name} ({tenant.id}); the key, shown once:",
              file=err)
        print(api_key, file=out)
    elif args.command == "revoke-key":
        if not tenants.revoke_key(args.key_id):
            raise CommandError(f"no key with the id {args.key_id!r}")
        print(f"key {args.key_id} revoked: it is refused from now on", file=err)
    elif args.command == "set-quota":
        tenant = tenants.set_quotas(_tenant(tenants, args.tenant).id, _quota_changes(args.pairs))
        defaults = default_quotas(settings)
        print(_describe(tenant, defaults, tenants.list_keys(tenant.id)), file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m app.admin",
        description="Descent's tenants and API keys, from a shell (against REDIS_URL).",
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create-tenant", help="make a tenant; prints its first key")
    create.add_argument("name")
    create.add_argument("--quota", action="append", default=[], metavar="NAME=VALUE",
                        help=f"one of {', '.join(QUOTAS)}; repeatable")
    commands.add_parser("list-tenants", help="every tenant, its quotas and key ids")
    key = commands.add_parser("create-key", help="another key for a tenant; prints it")
    key.add_argument("tenant", help="the tenant's id or name")
    revoke = commands.add_parser("revoke-key", help="refuse a key from now on")
    revoke.add_argument("key_id")
    quota = commands.add_parser("set-quota", help="set a tenant's quotas (VALUE default: reset)")
    quota.add_argument("tenant", help="the tenant's id or name")
    quota.add_argument("pairs", nargs="+", metavar="NAME=VALUE")
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    tenants = TenantStore.from_settings(settings)
    try:
        return run(args, tenants, settings)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except UNREACHABLE as exc:
        print(f"error: Redis at REDIS_URL is unreachable: {exc}", file=sys.stderr)
        return 2
    finally:
        tenants.close()


if __name__ == "__main__":
    sys.exit(main())
