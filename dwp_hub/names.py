"""What a prior name (or a source-checkpoint name) means: the one parser of the name grammar.

A name is read, in this order, as

- ``hf-hub:ORG/NAME[@REV]``: a Hub repository, always (the prefix timm uses for the same purpose);
- an existing path (``~`` expanded): that local folder or file;
- ``ORG/NAME[@REV]`` or a bare ``NAME[@REV]``: a repository name; a bare name stands for ``dwp/NAME``
  (`DEFAULT_ORG`), which is how bundled priors are named.

Whether a repository name is bundled, cached or fetched, and what a domain shorthand such as
``"notmnist"`` stands for, is decided by the readers (``dwp_hub.hub.locate``, ``dwp_hub.prior_spec``);
this module only says what the text means, without touching the disk beyond one existence check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HUB_PREFIX = "hf-hub:"
DEFAULT_ORG = "dwp"


def split_revision(name: str, revision: str | None) -> tuple[str, str | None]:
    """'org/name@rev' → ('org/name', 'rev'); a revision given both ways must agree."""
    if "@" not in name:
        return name, revision
    repo, _, rev = name.rpartition("@")
    if not repo or not rev:
        raise ValueError(f"malformed prior name {name!r}: expected ORG/NAME@REVISION")
    if revision is not None and revision != rev:
        raise ValueError(f"two revisions given for {repo!r}: {rev!r} in the name and {revision!r} as argument")
    return repo, rev


@dataclass(frozen=True)
class PriorName:
    """One parsed name: a local path, or a repository (``repo``) with an optional revision.

    `text` is the name as given (for messages and records). For a local name `path` is set and `repo` is
    None; otherwise `repo` is ``ORG/NAME`` or a bare ``NAME`` as written, `hub_asked` says whether the
    ``hf-hub:`` prefix demanded the Hub, and `revision` is the one from ``@REV`` or the argument.
    """

    text: str
    path: Path | None = None
    repo: str | None = None
    revision: str | None = None
    hub_asked: bool = False

    @classmethod
    def parse(cls, name: str | os.PathLike, revision: str | None = None) -> "PriorName":
        """Read `name` (module docstring); ValueError for an empty or malformed name."""
        text = os.fspath(name)
        if not isinstance(text, str):
            raise TypeError(f"a prior name is a str or path, got {type(name).__name__}")
        hub_asked = text.startswith(HUB_PREFIX)
        rest = text[len(HUB_PREFIX):] if hub_asked else text
        if not rest.strip():
            raise ValueError(f"empty prior name {text!r}: give a prior name (e.g. dwp/notmnist-7x7), "
                             "ORG/NAME of a Hub repository, or a folder (use '.' for the current one)")
        if not hub_asked:
            path = Path(rest).expanduser()
            if path.exists():
                if revision is not None:
                    raise ValueError(f"{text!r} is a local path; a revision applies to Hub names only")
                return cls(text, path=path)
        repo, rev = split_revision(rest, revision)
        return cls(text, repo=repo, revision=rev, hub_asked=hub_asked)

    @property
    def is_local(self) -> bool:
        """Whether the name is an existing local path."""
        return self.path is not None

    @property
    def repo_id(self) -> str | None:
        """``ORG/NAME`` of a repository name (a bare NAME means ``dwp/NAME``), None for a local path."""
        if self.repo is None:
            return None
        return self.repo if "/" in self.repo else f"{DEFAULT_ORG}/{self.repo}"

    @property
    def is_plain(self) -> bool:
        """A repository name with no prefix and no revision: the only kind a domain shorthand can be."""
        return self.repo is not None and not self.hub_asked and self.revision is None
