//! The two halves joined and parted: Link/Unlink (1.4, 1.8) or BridgeCreate, BridgeEnter,
//! BridgeLeave, BridgeDestroy (13, 22), with the bridge ids Asterisk mints.

use super::Call;
use crate::channels::{Channel, Side};
use crate::dialect::Dialect;

impl Call {
    /// The 13 bridge header block.
    fn bridge_block(&self, name: &str, uid: &str, n: usize) -> crate::events::Ev {
        self.pbx
            .bus
            .event(name, "call,all")
            .h("BridgeUniqueid", uid)
            .h("BridgeType", "basic")
            .h("BridgeTechnology", "simple_bridge")
            .h("BridgeCreator", "<unknown>")
            .h("BridgeName", "<unknown>")
            .h("BridgeNumChannels", &n.to_string())
    }

    /// 1.4 `Link`, 1.8 `Bridge` (Link/Unlink) between the two halves.
    fn link_event(&self, name: &str, state: Option<&str>) -> crate::events::Ev {
        let mut ev = self.pbx.bus.event(name, "call,all");
        if let Some(state) = state {
            ev = ev.h("Bridgestate", state).h("Bridgetype", "core");
        }
        let cid = |c: &Channel| c.cid_num.clone().unwrap_or_default();
        ev.h("Channel1", &self.one.ch.name)
            .h("Channel2", &self.two.ch.name)
            .h("Uniqueid1", &self.one.ch.uniqueid)
            .h("Uniqueid2", &self.two.ch.uniqueid)
            .h("CallerID1", &cid(&self.one.ch))
            .h("CallerID2", &cid(&self.two.ch))
    }

    /// Joins the answered halves where the generation shows it (1.4 Link, 1.8 Bridge,
    /// 13 BridgeCreate + BridgeEnter); 22 keeps the captured sequence (no bridge).
    pub(super) fn join(&mut self) {
        let bus = &self.pbx.bus;
        match self.dialect {
            Dialect::V22 => return,
            Dialect::V1_4 => bus.send(self.link_event("Link", None)),
            Dialect::V1_8 => bus.send(self.link_event("Bridge", Some("Link"))),
            Dialect::V13 => {
                let uid = bridge_uuid();
                bus.send(self.bridge_block("BridgeCreate", &uid, 0));
                let ev = self.bridge_block("BridgeEnter", &uid, 1);
                bus.send(self.one.ch.snapshot(ev, ""));
                let ev = self.bridge_block("BridgeEnter", &uid, 2);
                bus.send(self.two.ch.snapshot(ev, ""));
                self.joined = Some(uid);
            }
        }
        self.joined.get_or_insert_with(String::new);
        self.one.ch.peer = Some((self.two.ch.name.clone(), self.two.ch.uniqueid.clone()));
        self.two.ch.peer = Some((self.one.ch.name.clone(), self.one.ch.uniqueid.clone()));
        self.store(Side::One);
        self.store(Side::Two);
    }

    /// Undoes [`Call::join`] before the hangups: 1.4 Unlink, 1.8 Bridge Unlink, 13
    /// BridgeLeave x2 + BridgeDestroy.
    pub(super) fn unjoin(&mut self) {
        let Some(uid) = self.joined.take() else {
            return;
        };
        let bus = &self.pbx.bus;
        match self.dialect {
            Dialect::V22 => {}
            Dialect::V1_4 => bus.send(self.link_event("Unlink", None)),
            Dialect::V1_8 => bus.send(self.link_event("Bridge", Some("Unlink"))),
            Dialect::V13 => {
                let ev = self.bridge_block("BridgeLeave", &uid, 1);
                bus.send(self.one.ch.snapshot(ev, ""));
                let ev = self.bridge_block("BridgeLeave", &uid, 0);
                bus.send(self.two.ch.snapshot(ev, ""));
                bus.send(self.bridge_block("BridgeDestroy", &uid, 0));
            }
        }
        self.one.ch.peer = None;
        self.two.ch.peer = None;
    }
}

/// A random v4 UUID, the form of Asterisk's bridge ids.
fn bridge_uuid() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::thread_rng().gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        8 + (b[8] & 3),
        &h[17..20],
        &h[20..32]
    )
}
