"""The admin dashboard in real headless Chromium (playwright-core, like the JS SDK's
test): a wrong key is refused; after login the nodes are listed, and the session count
and the rates change when the test opens sessions and sends; user lookup works;
logout ends the stream. Screenshots of the views go to docs/img when
``PUSHGATE_SCREENSHOTS=1`` (``PUSHGATE_SCREENSHOTS=1 ./scripts/test tests/admin``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from tests.admin.conftest import ADMIN_KEY
from tests.support.admin import traffic
from tests.support.browser import ROOT, Browser, browser
from tests.support.server import ServerProcess
from tests.support.ws import ws_client

IMG = ROOT / "docs" / "img"
SCREENSHOTS = os.environ.get("PUSHGATE_SCREENSHOTS") == "1"


def _text(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)}).textContent"


async def wait(b: Browser, expr: str, seconds: float = 20) -> Any:
    """The truthy value of ``expr`` in the page, polled until ``seconds`` passed."""
    return await b.call("waitFor", timeout=seconds + 10, expr=expr, ms=int(seconds * 1000))


async def _shot(b: Browser, tmp_path: Path, name: str) -> None:
    target = IMG if SCREENSHOTS else tmp_path
    await b.call("screenshot", path=str(target / name), width=1400, height=1000)


async def test_dashboard_login_live_rates_and_user_lookup(
        admin_server: ServerProcess, tmp_path: Path) -> None:
    srv = admin_server
    async with browser() as b:
        await b.call("goto", url=f"{srv.base_url}/admin")
        assert await b.eval("!!document.querySelector('form#login')")
        await _shot(b, tmp_path, "admin-login.png")

        # a wrong key: refused, the login form again with the reason, no cookie
        await b.call("fill", selector="#key", value="not-the-admin-key")
        await b.call("click", selector="form#login button")
        assert await b.eval(_text(".error")) == "Wrong admin key."
        assert await b.eval("!!document.querySelector('form#login')")
        status = await b.eval("fetch('/admin/api/users/u1').then(r => r.status)")
        assert status == 401

        # the right key: the dashboard, live, listing this gateway; no secret in the page
        await b.call("fill", selector="#key", value=ADMIN_KEY)
        await b.call("click", selector="form#login button")
        await wait(b, f"{_text('#conn')} === 'live'")
        assert ADMIN_KEY not in await b.eval("document.documentElement.outerHTML")
        assert await b.eval("document.cookie") == ""  # HttpOnly: scripts cannot read it
        node = await wait(b, "(() => { const r = document.querySelector('#nodes tbody tr');"
            " return r && [...r.cells].map(c => c.textContent); })()")
        assert node[0] == "gateway" and node[1].startswith("hub-") and node[2] == "ok"
        assert node[3] == "0.1.0"
        assert await b.eval(_text("#total-sessions")) == "0"

        # sessions and traffic show up
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(ws_client(srv, user, dev=dev, app="mail"))
                       for user, dev in (("u1", "phone"), ("u1", "laptop"), ("u2", "tablet"))]
            await wait(b, f"{_text('#total-sessions')} === '3'")
            async with traffic(srv, clients, ["u1", "u2"]) as statuses:
                for rate in ("#rate-sends", "#rate-deliveries", "#rate-acks"):
                    await wait(b, f"parseFloat({_text(rate)}) > 0")
                await wait(b, f"parseFloat({_text('#lat-p99')}) > 0")
                assert await b.eval("document.querySelectorAll('#chart-rates canvas').length") == 1
                if SCREENSHOTS:  # a picture with some history in the charts
                    await asyncio.sleep(20)
                await _shot(b, tmp_path, "admin-dashboard.png")
            assert statuses and set(statuses) == {200}

            # latest sends: the newest is listed; a click shows its report, exact once the
            # counts are flushed (the page fetches it again on each click)
            newest = await wait(b, "(() => { const r = document.querySelector("
                                "'#sends tbody tr'); return r && r.dataset.report; })()")
            counts = await wait(b, f"""(() => {{
                document.querySelector('#sends tr[data-report="{newest}"]').click();
                const f = (k) => {{ const d = document.querySelector(
                    '#report dd[data-field="' + k + '"]'); return d && d.textContent; }};
                return f('acked') === '2' && ['addressed', 'stored', 'duplicates',
                    'delivered', 'acked', 'pushed', 'push_failed'].map(f);
            }})()""")
            assert counts == ["2", "2", "0", "2", "2", "0", "0"]
            assert await b.eval(_text("#report h3")) == f"report {newest}"

            # user lookup: u1's two live sessions with device and app, its inbox
            await b.call("fill", selector="#lookup-user", value="u1")
            await b.call("click", selector="form#lookup button")
            rows = await wait(b, "(() => { const t = document.querySelector('#user-sessions');"
                " return t && [...t.rows].slice(1).map(r => [...r.cells].map(c => c.textContent)); })()")
            assert sorted((r[2], r[3]) for r in rows) == [("laptop", "mail"), ("phone", "mail")]
            assert {r[1] for r in rows} == {node[1]}
            head = await b.eval("document.querySelector('#user-result dd').textContent")
            assert int(head) == len(statuses)
            await _shot(b, tmp_path, "admin-user.png")

            # a bad user id: the server's message naming the field
            await b.call("fill", selector="#lookup-user", value="x" * 300)
            await b.call("click", selector="form#lookup button")
            msg = await wait(b, "(() => { const e = document.querySelector("
                               "'#user-result .error'); return e && e.textContent; })()")
            assert msg.startswith("user is longer than")

        await wait(b, f"{_text('#total-sessions')} === '0'")
        # logout: back to the login form, the API refuses the old page
        await b.call("click", selector="#logout")
        assert await b.eval("!!document.querySelector('form#login')")
        status = await b.eval("fetch('/admin/api/stream').then(r => r.status)")
        assert status == 401
        assert not [m for m in b.console if "pageerror" in m], b.console
