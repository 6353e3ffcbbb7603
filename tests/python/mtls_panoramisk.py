"""panoramisk (a real AMI client library) logging in through amiproxy with a TLS client
certificate (mutual TLS).

Usage: mtls_panoramisk.py HOST PORT CAFILE CERTFILE KEYFILE USER SECRET
Prints `login: accepted` (then pings) or `login: refused`; exits non-zero on anything else
(a handshake the server refused shows as no answer to the login).
"""
import asyncio
import ssl
import sys

from panoramisk import Manager


async def main(host, port, cafile, certfile, keyfile, user, secret):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.load_cert_chain(certfile, keyfile)
    loop = asyncio.get_running_loop()
    manager = Manager(loop=loop, host=host, port=int(port), ssl=ctx,
                      username=user, secret=secret, ping_delay=60, ping_interval=60,
                      reconnect_timeout=60)
    await manager.connect()
    for _ in range(200):
        if manager.authenticated_future is not None:
            break
        await asyncio.sleep(0.05)
    if manager.authenticated_future is None:
        sys.exit('no login was sent')
    await asyncio.wait_for(asyncio.shield(manager.authenticated_future), 10)
    # login() (the future's callback) has run once the future is done.
    await asyncio.sleep(0)
    if not manager.authenticated:
        print('login: refused')
        manager.close()
        return
    pong = await manager.send_action({'Action': 'Ping'})
    if pong.get('Ping') != 'Pong':
        sys.exit(f'bad ping answer: {pong!r}')
    print('login: accepted')
    manager.close()


if __name__ == '__main__':
    asyncio.run(asyncio.wait_for(main(*sys.argv[1:8]), 30))
