"""AMI over the proxy's web side with real client libraries: `websockets` on /ami/ws and
`httpx` on POST /ami/action/{Name}. Run by crates/amiproxy/tests/web.rs:

    python3 web_clients.py HOST:PORT api    # logins, actions, lists, events, refusals
    python3 web_clients.py HOST:PORT slow   # while the upstream floods: a slow consumer

Exits non-zero with the failed check on stderr.
"""
import asyncio
import json
import sys
import time

import httpx
import websockets

BASE = sys.argv[1]
MODE = sys.argv[2]
WS = f"ws://{BASE}/ami/ws"
HTTP = f"http://{BASE}"
DEADLINE = 10.0


def basic(user, secret):
    import base64

    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def until(ws, pred, what, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        m = json.loads(await asyncio.wait_for(ws.recv(), left))
        if pred(m):
            return m


async def answer(ws, aid):
    return await until(ws, lambda m: m.get("ActionID") == aid and "Response" in m, f"answer {aid}")


async def ws_api():
    # Login by a first message, as over TCP; the ActionID comes back.
    async with websockets.connect(WS) as ws:
        await ws.send(json.dumps({"Action": "Login", "Username": "admin", "Secret": "admin-secret", "ActionID": "l1"}))
        m = await answer(ws, "l1")
        assert m["Response"] == "Success", m
        await ws.send(json.dumps({"Action": "Ping", "ActionID": "p1"}))
        m = await answer(ws, "p1")
        assert m["Ping"] == "Pong", m

        # A list as its items, then the same list collected into one object.
        await ws.send(json.dumps({"Action": "CoreShowChannels", "ActionID": "c1"}))
        m = await answer(ws, "c1")
        assert m["EventList"] == "start", m
        done = await until(ws, lambda m: m.get("ActionID") == "c1" and m.get("EventList") == "Complete", "c1 complete")
        assert done["Event"] == "CoreShowChannelsComplete", done
        await ws.send(json.dumps({"Action": "CoreShowChannels", "ActionID": "c2", "_collect": True}))
        m = await until(ws, lambda m: m.get("response", {}).get("ActionID") == "c2", "collected c2")
        assert m["response"]["EventList"] == "start", m
        assert m["events"][-1]["Event"] == "CoreShowChannelsComplete", m

        # Events come through, tagged with their server.
        await ws.send(json.dumps({"Action": "UserEvent", "UserEvent": "WebTest", "Server": "pbx2", "ActionID": "u1"}))
        ev = await until(ws, lambda m: m.get("Event") == "UserEvent" and m.get("UserEvent") == "WebTest", "UserEvent")
        assert ev["Server"] == "pbx2", ev

        # Repeated headers are arrays both ways.
        await ws.send(json.dumps({"Action": "UserEvent", "UserEvent": "Repeat", "Server": "pbx1", "Variable": ["a=1", "b=2"], "ActionID": "u2"}))
        ev = await until(ws, lambda m: m.get("UserEvent") == "Repeat", "repeated headers")
        assert ev["Variable"] == ["a=1", "b=2"], ev

        # JSON that would break AMI's framing never reaches the session.
        await ws.send(json.dumps({"Action": "Ping", "ActionID": "x1", "Extra": "a\r\nAction: Command"}))
        m = await answer(ws, "x1")
        assert m["Response"] == "Error" and "line break" in m["Message"], m
        await ws.send("not json")
        m = await until(ws, lambda m: m.get("Response") == "Error", "error for non-JSON")
        assert "JSON" in m["Message"], m

    # The policy holds over the WebSocket: a read-only user cannot originate.
    async with websockets.connect(WS) as ws:
        await ws.send(json.dumps({"Action": "Login", "Username": "ro", "Secret": "ro-secret", "ActionID": "l"}))
        assert (await answer(ws, "l"))["Response"] == "Success"
        await ws.send(json.dumps({"Action": "Originate", "Channel": "Local/100@default", "Application": "Wait", "ActionID": "o"}))
        m = await answer(ws, "o")
        assert m["Response"] == "Error" and m["Message"] == "Permission denied", m

    # Login by HTTP Basic auth on the upgrade; a wrong secret gets 401 and no socket.
    async with websockets.connect(WS, additional_headers=basic("admin", "admin-secret")) as ws:
        await ws.send(json.dumps({"Action": "Ping", "ActionID": "b1"}))
        assert (await answer(ws, "b1"))["Response"] == "Success"
    try:
        async with websockets.connect(WS, additional_headers=basic("admin", "wrong")):
            raise AssertionError("a wrong secret got a WebSocket")
    except websockets.exceptions.InvalidStatus as e:
        assert e.response.status_code == 401, e


def http_api():
    with httpx.Client(base_url=HTTP, timeout=DEADLINE) as c:
        r = c.post("/ami/action/CoreSettings", auth=("admin", "admin-secret"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["response"]["Response"] == "Success" and "AsteriskVersion" in body["response"], body
        assert body["events"] == [], body

        r = c.post("/ami/action/CoreShowChannels", auth=("admin", "admin-secret"), json={"ActionID": "mine"})
        body = r.json()
        assert body["response"]["ActionID"] == "mine", body
        assert body["events"][-1]["Event"] == "CoreShowChannelsComplete", body

        r = c.post("/ami/action/Ping", auth=("admin", "wrong"))
        assert r.status_code == 401, r.text
        r = c.post("/ami/action/Ping")
        assert r.status_code == 401 and "basic" in r.headers.get("www-authenticate", "").lower(), r.headers

        r = c.post("/ami/action/Originate", auth=("ro", "ro-secret"), json={"Channel": "Local/100@default", "Application": "Wait"})
        assert r.status_code == 200, r.text
        assert r.json()["response"]["Message"] == "Permission denied", r.text

        r = c.post("/ami/action/Command", auth=("admin", "admin-secret"), json={"Command": "core show uptime\r\nAction: Originate"})
        assert r.status_code == 400, r.text
        r = c.post("/ami/action/Ping", auth=("admin", "admin-secret"), json={"Action": "Command"})
        assert r.status_code == 400, r.text
        r = c.post("/ami/action/Logoff", auth=("admin", "admin-secret"))
        assert r.status_code == 400, r.text
        r = c.get("/ami/action/Ping", auth=("admin", "admin-secret"))
        assert r.status_code == 405, r.text


async def slow():
    """While the upstream floods: a WebSocket client that stops reading is cut off by the
    proxy's write timeout; another one keeps getting events at full speed."""
    fast = await websockets.connect(WS, additional_headers=basic("admin", "admin-secret"), max_queue=None)
    slowpoke = await websockets.connect(WS, additional_headers=basic("admin", "admin-secret"), max_queue=4)
    got = 0
    # Long enough for the kernel's socket buffers (megabytes on loopback) to fill first.
    end = time.monotonic() + 6.0
    while time.monotonic() < end:
        try:
            m = json.loads(await asyncio.wait_for(fast.recv(), 1.0))
        except asyncio.TimeoutError:
            continue
        if m.get("Event") == "UserEvent":
            got += 1
    assert got > 1000, f"the fast client got only {got} events"
    # The slow one was closed: draining what was buffered ends in a close, quickly.
    closed = False
    drain_end = time.monotonic() + 2 * DEADLINE
    while time.monotonic() < drain_end:
        try:
            await asyncio.wait_for(slowpoke.recv(), 5.0)
        except websockets.exceptions.ConnectionClosed:
            closed = True
            break
        except asyncio.TimeoutError:
            break
    assert closed, "the slow WebSocket client was not closed"
    await fast.close()
    print(f"fast client: {got} events in 6 s while the slow one was cut off")


def main():
    if MODE == "api":
        asyncio.run(ws_api())
        http_api()
    elif MODE == "slow":
        asyncio.run(slow())
    else:
        raise SystemExit(f"unknown mode {MODE}")
    print("ok")


if __name__ == "__main__":
    main()
