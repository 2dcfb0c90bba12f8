"""Who is asking, and what for: the values authentication produces and authorization reads.

Both are frozen and hashable, because they key the review caches.
"""

from __future__ import annotations

import dataclasses

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"

Extra = tuple[tuple[str, tuple[str, ...]], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """An authenticated user, as Kubernetes' `user.Info` describes one."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Extra = ()
    method: str = ""
    """How the user was authenticated (front-proxy, client-certificate, token); for metrics
    and logs only, never for decisions."""

    def with_authenticated_group(self) -> User:
        """Add system:authenticated unless either authenticated group is there already."""
        if AUTHENTICATED in self.groups or UNAUTHENTICATED in self.groups:
            return self
        return dataclasses.replace(self, groups=(*self.groups, AUTHENTICATED))

    def key(self) -> tuple[str, tuple[str, ...], str, Extra]:
        """What a decision about this user depends on (the method does not count)."""
        return (self.name, self.groups, self.uid, self.extra)


@dataclasses.dataclass(frozen=True, slots=True)
class Attributes:
    """What a request wants to do, as a SubjectAccessReview describes it.

    A resource request names a verb on a resource of an API group in a namespace; anything
    else is a non-resource request for a path.
    """

    verb: str
    path: str
    resource: str = ""
    namespace: str = ""
    group: str = ""
    version: str = ""

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)
