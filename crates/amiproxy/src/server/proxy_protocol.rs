//! The PROXY protocol (HAProxy's, versions 1 and 2): the client's real address, written by a
//! load balancer ahead of the connection's own bytes. Without it every client behind
//! HAProxy has HAProxy's address, so one guesser's failed logins ban everyone, and `permit`
//! rules see only the balancer.
//!
//! Read only from the addresses a listener trusts (`proxy_protocol_from`), and from them it
//! is required: a header from anyone else could name any address. Exactly the header's
//! bytes are read, so a TLS handshake or an AMI action right behind it is left untouched.

use crate::error::ProxyError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long a trusted peer has to send its header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 2's first twelve bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A version 1 line is at most this long, `\r\n` included.
const V1_MAX: usize = 107;

/// Address data (and TLVs) a version 2 header may carry: a balancer that sends more is not
/// one the proxy should believe.
const V2_MAX_PAYLOAD: usize = 1024;

/// What a header says of the client: its address, or nothing (`UNKNOWN`, `LOCAL`: the
/// balancer's own connection, e.g. a health check), when the connection's address stands.
pub type Source = Option<SocketAddr>;

/// Reads one header from `io`, and nothing after it.
pub async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<Source, ProxyError> {
    let mut head = [0u8; 16];
    read_exact(io, &mut head[..5]).await?;
    if &head[..5] == b"PROXY" {
        let mut line = head[..5].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(ProxyError::ProxyHeader("version 1 line too long"));
            }
            let mut b = [0u8; 1];
            read_exact(io, &mut b).await?;
            line.push(b[0]);
        }
        return parse_v1(&line);
    }
    if head[..5] != V2_SIGNATURE[..5] {
        return Err(ProxyError::ProxyHeader("no PROXY protocol header"));
    }
    read_exact(io, &mut head[5..]).await?;
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyError::ProxyHeader("version 2 payload too long"));
    }
    let mut payload = vec![0u8; len];
    read_exact(io, &mut payload).await?;
    parse_v2(&head, &payload)
}

async fn read_exact<R: AsyncRead + Unpin>(io: &mut R, buf: &mut [u8]) -> Result<(), ProxyError> {
    io.read_exact(buf)
        .await
        .map(drop)
        .map_err(|_| ProxyError::ProxyHeader("the connection closed in the PROXY protocol header"))
}

/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, `TCP6` alike, or `PROXY UNKNOWN…\r\n`.
fn parse_v1(line: &[u8]) -> Result<Source, ProxyError> {
    let bad = ProxyError::ProxyHeader;
    let text = std::str::from_utf8(&line[..line.len() - 2]).map_err(|_| bad("not ASCII"))?;
    let mut parts = text.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(bad("version 1 line does not start with `PROXY `"));
    }
    let family = parts.next().ok_or(bad("no protocol family"))?;
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let fields: Vec<&str> = parts.collect();
    let [src, _dst, sport, _dport] = fields[..] else {
        return Err(bad("version 1 line needs four fields"));
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| bad("bad IPv4 source"))?,
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| bad("bad IPv6 source"))?,
        _ => return Err(bad("unknown protocol family")),
    };
    // Ports are plain decimal, without a sign or leading zeros beyond "0".
    let port = match sport {
        "0" => 0,
        p if !p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().map_err(|_| bad("bad source port"))?
        }
        _ => return Err(bad("bad source port")),
    };
    Ok(Some(SocketAddr::new(ip, port)))
}

/// The binary header: version 2, `PROXY` (an address) or `LOCAL` (none), over TCP.
fn parse_v2(head: &[u8; 16], payload: &[u8]) -> Result<Source, ProxyError> {
    let bad = ProxyError::ProxyHeader;
    if head[..12] != V2_SIGNATURE {
        return Err(bad("version 2 signature"));
    }
    if head[12] >> 4 != 2 {
        return Err(bad("unknown version"));
    }
    match head[12] & 0x0f {
        0 => return Ok(None),
        1 => {}
        _ => return Err(bad("unknown command")),
    }
    match head[13] {
        // Unspecified: the balancer's own connection.
        0x00 => Ok(None),
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 => {
            let a = payload.get(..12).ok_or(bad("short IPv4 addresses"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]]))))
        }
        // TCP over IPv6.
        0x21 => {
            let a = payload.get(..36).ok_or(bad("short IPv6 addresses"))?;
            let mut src = [0u8; 16];
            src.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(src);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be_bytes([a[32], a[33]]),
            )))
        }
        _ => Err(bad("not TCP over IPv4 or IPv6")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    async fn read(bytes: &[u8]) -> (Result<Source, String>, Vec<u8>) {
        let mut r = bytes;
        let got = read_header(&mut r).await.map_err(|e| e.to_string());
        (got, r.to_vec())
    }

    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[0x20 | command, family]);
        b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[tokio::test]
    async fn version_1_gives_the_source_and_leaves_what_follows() {
        let (got, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 5038\r\nAction: Ping\r\n").await;
        assert_eq!(got, Ok(Some("203.0.113.7:56324".parse().unwrap())));
        assert_eq!(rest, b"Action: Ping\r\n");
        let (got, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 5038\r\n").await;
        assert_eq!(got, Ok(Some("[2001:db8::7]:1".parse().unwrap())));
        let (got, rest) = read(b"PROXY UNKNOWN\r\n\x16\x03\x01").await;
        assert_eq!(got, Ok(None));
        assert_eq!(rest, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn version_2_gives_the_source_and_leaves_what_follows() {
        let mut ipv4 = vec![198, 51, 100, 9, 10, 0, 0, 1];
        ipv4.extend_from_slice(&4242u16.to_be_bytes());
        ipv4.extend_from_slice(&5038u16.to_be_bytes());
        // A TLV after the addresses is skipped.
        ipv4.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]);
        let mut bytes = v2(1, 0x11, &ipv4);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (got, rest) = read(&bytes).await;
        assert_eq!(got, Ok(Some("198.51.100.9:4242".parse().unwrap())));
        assert_eq!(rest, b"\x16\x03\x01");
        let mut ipv6 = vec![0u8; 36];
        ipv6[..16].copy_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        ipv6[32..34].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            read(&v2(1, 0x21, &ipv6)).await.0,
            Ok(Some("[2001:db8::9]:7".parse().unwrap()))
        );
        // LOCAL: the balancer's own health check.
        assert_eq!(read(&v2(0, 0x00, &[])).await.0, Ok(None));
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        for bad in [
            &b"Action: Login\r\n\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
        ] {
            assert!(read(bad).await.0.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert_eq!(
            read(long.as_bytes()).await.0,
            Err("PROXY protocol: version 1 line too long".to_owned())
        );
        assert!(read(&v2(1, 0x11, &[1, 2, 3])).await.0.is_err());
        assert!(read(&v2(1, 0x31, &[0; 216])).await.0.is_err(), "unix sockets");
        assert!(read(&v2(2, 0x11, &[0; 12])).await.0.is_err(), "unknown command");
        let mut huge = v2(1, 0x11, &[]);
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(read(&huge).await.0.is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_nor_read_past_a_header(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (got, rest) = rt.block_on(read(&bytes));
            if got.is_ok() {
                // What was consumed is exactly one header: reading it again gives the same.
                let used = bytes.len() - rest.len();
                let (again, left) = rt.block_on(read(&bytes[..used]));
                prop_assert_eq!(again, got);
                prop_assert!(left.is_empty());
            }
        }
    }
}
