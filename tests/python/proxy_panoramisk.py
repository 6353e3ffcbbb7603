"""panoramisk (a real AMI client library) through amiproxy over TLS.

Usage: proxy_panoramisk.py HOST PORT CAFILE USER SECRET
Logs in, pings, originates async and waits for its OriginateResponse, reads a merged
QueueStatus list. Exits non-zero with a message on any failure.
"""
import asyncio
import ssl
import sys

from panoramisk import Manager


async def main(host, port, cafile, user, secret):
    ctx = ssl.create_default_context(cafile=cafile)
    loop = asyncio.get_running_loop()
    manager = Manager(loop=loop, host=host, port=int(port), ssl=ctx,
                      username=user, secret=secret, ping_delay=60, ping_interval=60)
    originate_done = loop.create_future()

    def on_originate(_manager, event):
        if event.get('ActionID') == 'pk-orig-1' and not originate_done.done():
            originate_done.set_result(event)

    manager.register_event('OriginateResponse', on_originate)
    await manager.connect()
    for _ in range(200):
        if manager.authenticated:
            break
        await asyncio.sleep(0.05)
    if not manager.authenticated:
        sys.exit('login through the proxy failed')

    pong = await manager.send_action({'Action': 'Ping'})
    if pong.get('Ping') != 'Pong':
        sys.exit(f'bad ping answer: {pong!r}')

    # panoramisk treats an async Originate as a list: [response, OriginateResponse].
    result = await manager.send_action({
        'Action': 'Originate', 'Channel': 'Local/100@default', 'Application': 'Wait',
        'Data': '1', 'Async': 'true', 'ActionID': 'pk-orig-1'})
    messages = result if isinstance(result, list) else [result]
    if messages[0].get('Response') != 'Success':
        sys.exit(f'originate refused: {messages!r}')
    events = [m for m in messages if m.get('Event') == 'OriginateResponse']
    event = events[0] if events else await asyncio.wait_for(originate_done, 10)
    if event.get('Response') != 'Success' or not event.get('Server'):
        sys.exit(f'bad OriginateResponse: {event!r}')

    items = await manager.send_action({'Action': 'QueueStatus'}, as_list=True)
    names = [m.get('Event') for m in items]
    if not names or names[-1] != 'QueueStatusComplete' or 'QueueParams' not in names:
        sys.exit(f'bad QueueStatus list: {names!r}')
    servers = {m.get('Server') for m in items if m.get('Event') == 'QueueParams'}
    print(f'ok: ping, originate ({event.get("Server")}), QueueStatus with {len(items)} messages from {sorted(servers)}')
    manager.close()


if __name__ == '__main__':
    asyncio.run(asyncio.wait_for(main(*sys.argv[1:6]), 30))
