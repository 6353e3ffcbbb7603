"""panoramisk (a real AMI client library) reading a list whose upstream dies halfway.

Usage: cut_list.py HOST PORT USER SECRET ACTION
The proxy must end the list (its `...Complete`, with ProxyIncomplete saying why), so
`send_action(..., as_list=True)` returns to its caller instead of waiting forever.
Exits non-zero with a message on any failure.
"""
import asyncio
import sys

from panoramisk import Manager


async def main(host, port, user, secret, action):
    loop = asyncio.get_running_loop()
    manager = Manager(loop=loop, host=host, port=int(port),
                      username=user, secret=secret, ping_delay=60, ping_interval=60)
    await manager.connect()
    for _ in range(200):
        if manager.authenticated:
            break
        await asyncio.sleep(0.05)
    if not manager.authenticated:
        sys.exit('login through the proxy failed')
    items = await asyncio.wait_for(manager.send_action({'Action': action}, as_list=True), 10)
    last = items[-1] if items else {}
    if not last.get('Event', '').endswith('Complete') or not last.get('ProxyIncomplete'):
        sys.exit(f'the list did not end as cut short: {items!r}')
    print(f'ok: {action} returned {len(items)} messages, ended by {last.get("Event")}')
    manager.close()


if __name__ == '__main__':
    asyncio.run(asyncio.wait_for(main(*sys.argv[1:6]), 30))
