"""``godel config``: profiles in the user's config file (where the mesh is, which credential to
present), and ``godel completion``: the shell completion script. Neither talks to a mesh."""

from __future__ import annotations

import argparse
from typing import Any

import shtab

from godel_client import config
from godel_client.cli_common import connection_options, dump, local_parser, note, out
from godel_client.credentials import ClientTls, resolve

SHELLS = ("bash", "zsh", "tcsh")


def _profile_name(args: argparse.Namespace) -> str:
    return config.load(config.config_path()).chosen(args.profile)


def mask(value: str) -> str:
    """A secret as ``godel_sk_ab…`` (enough to tell two apart, not enough to use)."""
    return value[:11] + "…" if len(value) > 14 else "…"


def _set(args: argparse.Namespace) -> int:
    name = _profile_name(args)
    path = config.set_value(name, args.key, args.value)
    shown = mask(args.value) if args.key in config.SECRET_KEYS else args.value.strip()
    note(f"profile {name}: {args.key} = {shown} ({path})")
    return 0


def _unset(args: argparse.Namespace) -> int:
    name = _profile_name(args)
    path = config.unset_value(name, args.key)
    note(f"profile {name}: {args.key} unset ({path})")
    return 0


def _use(args: argparse.Namespace) -> int:
    path = config.use(args.name)
    note(f"default profile: {args.name} ({path})")
    return 0


def _show(args: argparse.Namespace) -> int:
    """The config file, the profile in use and its settings, and the connection they make (with
    where the address and the credential come from, and its TLS)."""
    path = config.config_path()
    current = config.load(path)
    name = current.chosen(args.profile)
    settings = current.profiles.get(name, {})
    target = resolve(**connection_options(args))
    credential = (
        "session" if target.session else "token" if target.token else "api_key" if target.api_key else "none"
    )
    tls = _tls_summary(target.tls)
    document: dict[str, Any] = {
        "config": str(path),
        "profile": name,
        "profiles": sorted(current.profiles),
        "settings": {k: mask(v) if k in config.SECRET_KEYS else v for k, v in settings.items()},
        "endpoint": target.address,
        "endpointFrom": target.address_from,
        "credential": credential,
        "credentialFrom": target.credential_from,
        "tls": tls,
    }
    if args.json:
        dump(document)
        return 0
    out(f"config file:  {path}{'' if path.exists() else ' (not created yet)'}")
    out(f"profile:      {name}   (profiles: {', '.join(document['profiles']) or 'none'})")
    for key, value in document["settings"].items():
        out(f"  {key} = {value}")
    out(f"endpoint:     {target.address}   (from {target.address_from})")
    out(
        f"credential:   {credential}"
        + (f"   (from {target.credential_from})" if target.credential_from != "none" else "")
    )
    if tls is None:
        out("tls:          off (plaintext)")
    else:
        out(f"tls:          on   (ca: {tls['ca'] or 'the system CAs'}; client cert: {tls['cert'] or 'none'})")
    return 0


def _tls_summary(tls: ClientTls | None) -> dict[str, str] | None:
    """The TLS files of a connection (None: plaintext); an empty string for one not given."""
    if tls is None:
        return None
    return {
        "ca": str(tls.ca_file or ""),
        "cert": str(tls.cert_file or ""),
        "key": str(tls.key_file or ""),
    }


def _completion(args: argparse.Namespace) -> int:
    out(shtab.complete(args.root_parser, shell=args.shell))
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser, root: argparse.ArgumentParser) -> None:
    group = commands.add_parser(
        "config",
        help="profiles: where the mesh is and which credential to send",
        description=f"Profiles live in {config.config_path()} ($GODEL_CONFIG overrides the path). "
        "The profile used is --profile, else $GODEL_PROFILE, else the file's default profile, "
        f"else '{config.DEFAULT_PROFILE}'. Settings: {', '.join(config.PROFILE_KEYS)}.",
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    set_ = local_parser(actions, "set", _set, common, help="set a setting of the profile (creating it)")
    set_.add_argument("key", choices=config.PROFILE_KEYS, help="the setting")
    set_.add_argument("value", help="its value")
    unset = local_parser(actions, "unset", _unset, common, help="remove a setting from the profile")
    unset.add_argument("key", choices=config.PROFILE_KEYS, help="the setting")
    use = local_parser(actions, "use", _use, common, help="make a profile the default one")
    use.add_argument("name", help="profile name")
    local_parser(actions, "show", _show, common, help="show the profile and the connection it makes")

    shell = local_parser(
        commands,
        "completion",
        _completion,
        common,
        help="print the shell completion script",
        epilog="bash: godel completion bash > ~/.local/share/bash-completion/completions/godel\n"
        'zsh:  godel completion zsh > "${fpath[1]}/_godel"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shell.add_argument("shell", choices=SHELLS, help="the shell")
    shell.set_defaults(root_parser=root)
