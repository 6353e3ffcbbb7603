"""panoramisk (a real AMI client library) straight against ami-sim.

Usage: sim_panoramisk.py HOST PORT [USER SECRET]
Logs in, pings, originates async and waits for its OriginateResponse (matched by ActionID),
reads a QueueStatus list. Exits non-zero with a message on any failure; 30 s overall limit.
"""
import asyncio
import sys

from panoramisk import Manager


async def main(host, port, user='admin', secret='admin-secret'):
    loop = asyncio.get_running_loop()
    manager = Manager(loop=loop, host=host, port=int(port),
                      username=user, secret=secret, ping_delay=60, ping_interval=60)
    originate_done = loop.create_future()

    def on_originate(_manager, event):
        if event.get('ActionID') == 'pk-orig-1' and not originate_done.done():
            originate_done.set_result(event)

    manager.register_event('OriginateResponse', on_originate)
    await asyncio.wait_for(manager.connect(), 10)
    for _ in range(200):
        if manager.authenticated:
            break
        await asyncio.sleep(0.05)
    if not manager.authenticated:
        sys.exit('login to the sim failed')

    pong = await asyncio.wait_for(manager.send_action({'Action': 'Ping'}), 10)
    if pong.get('Ping') != 'Pong':
        sys.exit(f'bad ping answer: {pong!r}')

    resp = await asyncio.wait_for(manager.send_action({
        'Action': 'Originate', 'Channel': 'Local/100@default', 'Application': 'Wait',
        'Data': '1', 'Async': 'true', 'ActionID': 'pk-orig-1'}), 10)
    # panoramisk treats an async Originate as a list: the Response, then the
    # OriginateResponse event that carries the same ActionID.
    msgs = resp if isinstance(resp, list) else [resp]
    if not msgs or msgs[0].get('Response') != 'Success':
        sys.exit(f'originate refused: {resp!r}')
    for m in msgs[1:]:
        if m.get('Event') == 'OriginateResponse' and not originate_done.done():
            originate_done.set_result(m)
    event = await asyncio.wait_for(originate_done, 10)
    if event.get('ActionID') != 'pk-orig-1':
        sys.exit(f'OriginateResponse without our ActionID: {event!r}')
    if event.get('Response') != 'Success' or not event.get('Uniqueid'):
        sys.exit(f'bad OriginateResponse: {event!r}')

    items = await asyncio.wait_for(
        manager.send_action({'Action': 'QueueStatus'}, as_list=True), 10)
    names = [m.get('Event') for m in items]
    if not names or names[-1] != 'QueueStatusComplete' or 'QueueParams' not in names:
        sys.exit(f'bad QueueStatus list: {names!r}')
    print(f'ok: ping, originate ({event.get("Channel")}), QueueStatus with {len(items)} messages')
    manager.close()


if __name__ == '__main__':
    asyncio.run(asyncio.wait_for(main(*sys.argv[1:5]), 30))
