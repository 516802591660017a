"""The approvals' Telegram desk: each request goes to its approvers' chats as a message with
Approve and Reject buttons, and the buttons' answers come back — by ``getUpdates`` long polling
(local mode), or through the ingress's webhook route with Telegram's secret token (cloud mode,
``TELEGRAM_WEBHOOK_SECRET``).

Only an answer from an approver group's chat counts, and in it only from one of the group's
``user_ids`` when it lists any; anyone else's press is answered "not yours" and changes nothing.
A button carries the approval's id, which is bound to the exact actions (``approvals``): a press
on an old message of a changed decision answers the old approval, never the new one. One
process of many runs the desk (``Flags.lead``): Telegram allows one ``getUpdates`` at a time,
and a request is sent once (``serve``, alone on its store, does not need to lead; a worker
that stopped hands over when its lead lapses, within twice ``APPROVALS_POLL_SECONDS``). The
polling offset is kept in the store, so a restart neither
loses a press nor applies one twice (a second answer changes nothing anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
import orjson
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from autorunner import operations
from autorunner.backends import Backends
from autorunner.clock import Clock, sleep_unless, system_clock
from autorunner.errors import OperationRefused, Unavailable
from autorunner.policy import Policy
from autorunner.records import ApprovalView

log = structlog.get_logger("autorunner.approvals")

OFFSET_FLAG = "telegram_updates_offset"
LEAD = "approval_desk"
T = TypeVar("T")
SEND_BATCH = 20


MAX_TEXT = 4096
"""The longest message Telegram takes."""


def _fit(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def keyboard(approval_id: str) -> dict[str, Any]:
    """The inline keyboard of a request: its answers carry the approval's id."""
    return {
        "inline_keyboard": [
            [
                {"text": "✅ Approve", "callback_data": f"ap:y:{approval_id}"},
                {"text": "❌ Reject", "callback_data": f"ap:n:{approval_id}"},
            ]
        ]
    }


def parse_answer(data: str) -> tuple[str, bool] | None:
    """``(approval_id, approve)`` of a button's ``callback_data``; ``None`` when not ours."""
    kind, _, rest = data.partition(":")
    choice, _, approval_id = rest.partition(":")
    if kind != "ap" or choice not in ("y", "n") or not approval_id.startswith("ap-"):
        return None
    return approval_id, choice == "y"


class ApprovalDesk:
    """Sends requests and takes answers; see the module docstring."""

    def __init__(
        self,
        backends: Backends,
        policy: Callable[[], Policy],
        http: httpx2.AsyncClient,
        *,
        api: str,
        token: str,
        name: str,
        poll: bool,
        poll_seconds: float = 25.0,
        alone: bool = False,
        clock: Clock = system_clock,
    ) -> None:
        self._backends = backends
        self._policy = policy
        self._http = http
        self._base = f"{api.rstrip('/')}/bot{token}"
        self._name = name
        self._poll = poll
        self._poll_seconds = poll_seconds
        self._alone = alone
        self._clock = clock
        self._retry_at: dict[str, float] = {}
        self._tries: dict[str, int] = {}

    async def _call(self, method: str, payload: dict[str, Any], *, wait: float = 10.0) -> Any:
        answer = await self._http.post(f"{self._base}/{method}", json=payload, timeout=wait)
        body = orjson.loads(answer.content) if answer.content else {}
        if answer.status_code != 200 or not body.get("ok"):
            raise RuntimeError(
                f"Telegram {method}: {answer.status_code} {body.get('description', '')}"
            )
        return body.get("result")

    async def send_pending(self) -> int:
        """Send the requests not sent yet to their approver groups' chats; how many reached at
        least one chat. A chat that refuses is recorded and does not hold back the others or
        the next requests; a request no chat took is tried again later, backing off."""
        sent = 0
        policy = self._policy()
        now = time.monotonic()
        for view in await self._backends.store.list_approvals(limit=SEND_BATCH, unnotified=True):
            if self._retry_at.get(view.approval_id, 0.0) > now:
                continue
            messages: list[dict[str, Any]] = []
            failures: list[dict[str, Any]] = []
            for name in view.approvers:
                group = policy.approver_group(name)
                if group is None:
                    failures.append({"group": name, "error": "no such approver group"})
                    continue
                try:
                    result = await self._call(
                        "sendMessage",
                        {
                            "chat_id": group.chat_id,
                            "text": _fit(view.summary),
                            "reply_markup": keyboard(view.approval_id),
                        },
                    )
                except (RuntimeError, httpx2.HTTPError) as exc:
                    failures.append({"group": name, "error": str(exc)[:200]})
                    continue
                messages.append({"chat_id": group.chat_id, "message_id": result["message_id"]})
            if failures:
                log.warning("approval.not_sent", approval=view.approval_id, failures=failures)
            if not messages and any(f["error"] != "no such approver group" for f in failures):
                tries = self._tries.get(view.approval_id, 0) + 1
                self._tries[view.approval_id] = tries
                self._retry_at[view.approval_id] = now + min(300.0, 2.0**tries)
                continue
            await self._backends.store.mark_notified(
                view.approval_id, {"messages": messages, "failures": failures}
            )
            self._retry_at.pop(view.approval_id, None)
            self._tries.pop(view.approval_id, None)
            log.info("approval.requested", approval=view.approval_id, event_id=view.event_id)
            sent += 1
        return sent

    def _may_answer(self, view: ApprovalView, chat_id: object, user_id: object) -> bool:
        policy = self._policy()
        for name in view.approvers:
            group = policy.approver_group(name)
            if (
                group is not None
                and group.chat_id == chat_id
                and (not group.user_ids or user_id in group.user_ids)
            ):
                return True
        return False

    async def handle_update(self, update: dict[str, Any]) -> None:
        """One update from Telegram: a press on a request's button is an answer, if its sender
        may give it; anything else is ignored."""
        query = update.get("callback_query")
        if not isinstance(query, dict):
            return
        parsed = parse_answer(str(query.get("data", "")))
        sender = query.get("from") or {}
        chat_id = ((query.get("message") or {}).get("chat") or {}).get("id")
        if parsed is None:
            return
        approval_id, approve = parsed
        view = await self._backends.store.get_approval(approval_id)
        if view is None or not self._may_answer(view, chat_id, sender.get("id")):
            log.warning(
                "approval.refused_answer",
                approval=approval_id,
                chat_id=chat_id,
                user_id=sender.get("id"),
            )
            await self._ack(query, "Not yours to answer.")
            return
        who = f"telegram:{sender.get('username') or sender.get('id')}"
        try:
            answered = await operations.answer_approval(
                self._backends, approval_id, approve=approve, via="telegram", by=who
            )
        except OperationRefused as exc:
            await self._ack(query, str(exc)[:190])
            return
        done = "Approved" if answered.view.approved else "Rejected"
        log.info("approval.answered", approval=approval_id, approved=approve, by=who)
        await self._ack(query, f"{done}.")
        message = query.get("message") or {}
        with contextlib.suppress(RuntimeError, httpx2.HTTPError):
            await self._call(
                "editMessageText",
                {
                    "chat_id": chat_id,
                    "message_id": message.get("message_id"),
                    "text": f"{answered.view.summary}\n\n{done} by {who}.",
                },
            )

    async def _ack(self, query: dict[str, Any], text: str) -> None:
        with contextlib.suppress(RuntimeError, httpx2.HTTPError):
            await self._call(
                "answerCallbackQuery", {"callback_query_id": query.get("id"), "text": text}
            )

    async def poll_once(self) -> int:
        """One ``getUpdates`` long poll from the kept offset; how many updates came."""
        stored = await self._backends.store.get_flag(OFFSET_FLAG)
        offset = int(stored) if stored else 0
        updates = await self._call(
            "getUpdates",
            {
                "offset": offset,
                "timeout": int(self._poll_seconds),
                "allowed_updates": ["callback_query"],
            },
            wait=self._poll_seconds + 10,
        )
        for update in updates:  # each confirmed once handled: a stop between loses none
            if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                continue  # not an update: nothing to confirm it by
            try:
                await self.handle_update(update)
            except Unavailable:
                raise  # not confirmed: Telegram gives it again at the next poll
            except Exception:  # a malformed update must not come back forever
                log.exception("approval.bad_update", update_id=update["update_id"])
            offset = max(offset, update["update_id"] + 1)
            await self._backends.store.set_flag(OFFSET_FLAG, str(offset))
        return len(updates)

    async def run(self, stop: asyncio.Event, *, every: float = 1.0) -> None:
        """Until ``stop``: while leading, send new requests every ``every`` seconds and (when
        polling) take answers by long polls, side by side — a poll waiting for a press must
        not hold back the next request."""
        leading = asyncio.Event()
        tasks = [asyncio.create_task(self._lead(stop, leading, every))]
        tasks.append(asyncio.create_task(self._every(stop, leading, every, self.send_pending)))
        if self._poll:
            tasks.append(
                asyncio.create_task(self._every(stop, leading, every, self.poll_once, waits=True))
            )
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _lead(self, stop: asyncio.Event, leading: asyncio.Event, every: float) -> None:
        while not stop.is_set():
            try:
                held = self._alone or await self._backends.store.lead(
                    LEAD, owner=self._name, ttl=2 * self._poll_seconds + 5
                )
            except Unavailable as exc:
                log.warning("approval.desk_failed", error=str(exc))
                held = False
            if held:
                leading.set()
            else:
                leading.clear()
            if self._alone:
                return
            await sleep_unless(stop, every)

    async def _every(
        self,
        stop: asyncio.Event,
        leading: asyncio.Event,
        every: float,
        work: Callable[[], Awaitable[int]],
        *,
        waits: bool = False,
    ) -> None:
        """``work`` again and again while leading; a pause of ``every`` after a failed round,
        or an idle one unless ``work`` waits by itself (a long poll)."""
        while not stop.is_set():
            if not leading.is_set():
                await _until(stop, leading.wait())
                continue
            try:
                done = await _until(stop, work())
            except (Unavailable, RuntimeError, httpx2.HTTPError) as exc:
                log.warning("approval.desk_failed", error=str(exc) or type(exc).__name__)
                await sleep_unless(stop, every)
                continue
            except Exception:  # a malformed update, a bug: logged; the desk goes on
                log.exception("approval.desk_error")
                await sleep_unless(stop, every)
                continue
            if not done and not waits:
                await sleep_unless(stop, every)


async def _until(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """``work``'s result, unless ``stop`` comes first (a long poll ends with the process)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        return await task
    return None


TELEGRAM_PATH = "/telegram/updates"
SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header's name
MAX_UPDATE_BYTES = 64 * 1024


def webhook_endpoint(desk: ApprovalDesk, secret: str) -> Callable[[Request], Awaitable[Response]]:
    """``POST /telegram/updates``: Telegram's webhook (``setWebhook`` with ``secret_token``).
    A request without the secret is refused (401); an update that cannot be handled now is a
    503, which Telegram delivers again."""
    expected = secret.encode()

    async def endpoint(request: Request) -> Response:  # noqa: PLR0911 - one per refusal
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            log.warning("telegram.webhook_refused", reason="bad secret token")
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.body()
        if len(body) > MAX_UPDATE_BYTES:
            return JSONResponse({"error": "too_large"}, status_code=413)
        try:
            update = orjson.loads(body)
        except orjson.JSONDecodeError:
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        if not isinstance(update, dict):
            return JSONResponse({"error": "invalid_update"}, status_code=400)
        try:
            await desk.handle_update(update)
        except Unavailable as exc:
            log.warning("telegram.webhook_unavailable", error=str(exc))
            return JSONResponse({"error": "unavailable"}, status_code=503)
        except Exception:  # a malformed update: Telegram would send it again forever
            log.exception("telegram.bad_update")
            return JSONResponse({"error": "bad_update"}, status_code=200)
        return JSONResponse({"ok": True})

    return endpoint
