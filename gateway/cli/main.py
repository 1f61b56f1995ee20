"""`memgate` command line: parses flags into `Settings` and hands them to the part that runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from gateway.config import OPTIONS, ConfigError, Settings, load_settings
from gateway.rules import RequestFacts, RulesError, load_rules

def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """Every setting as a flag; the env var and default shown in its help."""
    parser.add_argument("--config", metavar="FILE", help="memgate.toml to read (env MEMGATE_CONFIG; default ./memgate.toml if present)")
    for option in OPTIONS:
        default = "" if option.secret else f"; default {option.default!r}"
        flags = [option.flag] + ([option.alias] if option.alias else [])
        parser.add_argument(*flags, dest=option.name, type=option.type, default=None, metavar=option.type.__name__.upper(),
                            help=f"{option.help} (env {option.env}{default})")


def settings_from(args: argparse.Namespace) -> Settings:
    flags = {o.name: getattr(args, o.name, None) for o in OPTIONS}
    return load_settings(flags, config_file=getattr(args, "config", None))


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.memory.embed import missing_for
    from gateway.server import serve

    settings = settings_from(args)
    missing = missing_for(settings.embedder)
    if missing:  # one line naming the fix, not an ImportError traceback from inside the lifespan
        raise ConfigError(missing)
    serve(settings)
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ruleset = load_rules(settings.rules)
    print(f"ok: {len(ruleset.rules)} rules in {len(ruleset.files)} files under {settings.rules}")
    for rule in ruleset.rules:
        print(f"  {rule.name}  ({rule.source})")
    return 0


def cmd_rules_explain(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ruleset = load_rules(settings.rules)
    headers = {}
    for item in args.header or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--header takes NAME=VALUE, got {item!r}")
        headers[name.strip().lower()] = value
    facts = RequestFacts(args.model, args.path, args.tenant, args.user, headers)
    name, rule = ruleset.select(facts)
    from dataclasses import asdict

    from gateway.memory.windows import resolve

    window = resolve(args.model, rule.context_window).describe()
    print(json.dumps({"rule": name, "settings": asdict(rule), "context_window": window}, indent=2))
    return 0


def cmd_prepare_model(args: argparse.Namespace) -> int:
    from gateway.memory.distill import MissingExtra, build_local_model

    try:
        print(build_local_model(settings_from(args).model_cache_dir))
    except MissingExtra as exc:
        raise ConfigError(str(exc)) from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo import main as demo_main

    return demo_main()


def build_parser(extra: Sequence[Callable[[argparse._SubParsersAction], None]] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memgate", description="OpenAI-compatible memory proxy gateway.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway", description="Run the gateway. Every flag is also an env var.")
    add_setting_flags(serve)
    serve.set_defaults(func=cmd_serve)

    rules = sub.add_parser("rules", help="validate and explain injection rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = rules_sub.add_parser("check", help="validate every rules file; exit 1 on the first problem")
    add_setting_flags(check)
    check.set_defaults(func=cmd_rules_check)
    explain = rules_sub.add_parser("explain", help="print which rule applies to a request and its merged settings")
    add_setting_flags(explain)
    explain.add_argument("--model", required=True, help="the request's model")
    explain.add_argument("--header", action="append", metavar="NAME=VALUE", help="a request header (repeatable)")
    explain.add_argument("--path", default="/v1/chat/completions", help="the request path")
    explain.add_argument("--tenant", default="", help="the tenant (a key fingerprint k_... or a mapped name)")
    explain.add_argument("--user", default=None, help="the end-user id")
    explain.set_defaults(func=cmd_rules_explain)

    prepare = sub.add_parser("prepare-model", help="rebuild the shipped local embedding model by its recipe into --model-cache (a maintainer's step; needs the [local] extra)")
    add_setting_flags(prepare)
    prepare.set_defaults(func=cmd_prepare_model)

    demo = sub.add_parser("demo", help="offline demo: two users, extraction and recall, in seconds")
    demo.set_defaults(func=cmd_demo)

    for register in extra:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.cli import admin as cli_admin

    parser = build_parser([cli_admin.register])
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, RulesError) as exc:
        print(f"memgate: {exc}", file=sys.stderr)
        return 1
    except cli_admin.CommandError as exc:
        print(f"memgate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
