"""The gateway over HTTP: JSON in and out, its error bodies turned into one exception."""

from __future__ import annotations

from typing import Any

import httpx


class GatewayError(Exception):
    """The gateway answered with an error body (`{"error": {"code", "message"}}`), or did not
    answer at all (code `E_UNREACHABLE`)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class Gateway:
    def __init__(self, url: str, token: str | None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, path, json=json, params=query)
        except httpx.HTTPError as exc:
            raise GatewayError(
                0, "E_UNREACHABLE", f"no answer from {self.url} ({type(exc).__name__})"
            ) from None
        if response.status_code >= 400:
            raise _error_of(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return self.call("POST", path, json=json, params=params)


def _error_of(response: httpx.Response) -> GatewayError:
    try:
        error = response.json()["error"]
        return GatewayError(
            response.status_code, str(error["code"]), str(error["message"]), error.get("details")
        )
    except (ValueError, KeyError, TypeError):
        return GatewayError(
            response.status_code, f"HTTP_{response.status_code}", response.reason_phrase
        )
