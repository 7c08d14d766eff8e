"""A client of the gateway's web UI for in-process tests: an httpx client that keeps cookies
like a browser and sends the CSRF token the last page carried with every form it posts."""

from __future__ import annotations

import re
from typing import Any

import httpx

META_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


class UiClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.csrf = ""

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.get(url, **kwargs)
        found = META_CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(
        self, url: str, data: dict[str, str] | None = None, *, csrf: bool = True, **kwargs: Any
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        return await self.http.post(url, data=form, **kwargs)

    async def fetch(
        self, url: str, data: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """What the pages' script sends: a fragment request, CSRF token in the header."""
        headers = {"X-Requested-With": "fetch", "X-CSRF-Token": self.csrf}
        if data is None:
            return await self.http.get(url, headers=headers, **kwargs)
        return await self.http.post(url, data=data, headers=headers, **kwargs)

    async def sign_in(self, token: str) -> httpx.Response:
        await self.get("/ui/sign-in")
        response = await self.post("/ui/sign-in", {"token": token, "next": "/ui/endpoints"})
        await self.get("/ui/endpoints")
        return response
