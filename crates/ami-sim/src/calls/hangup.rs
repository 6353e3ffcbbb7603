//! The end of a call: hangup requests, Hangup events in each generation's form, the CDR,
//! and the order in which the halves leave.

use super::{Call, End};
use crate::channels::Side;
use std::time::SystemTime;

impl Call {
    pub(super) fn cdr(&self, side: Side) {
        let ch = match side {
            Side::One => &self.one.ch,
            Side::Two => &self.two.ch,
        };
        let now = SystemTime::now();
        let (num, name) = self.req.callerid.clone().unwrap_or_default();
        let dur = now.duration_since(ch.created_wall).unwrap_or_default().as_secs();
        let bill = ch
            .answered_wall
            .and_then(|a| now.duration_since(a).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let bus = &self.pbx.bus;
        bus.send(
            bus.event("Cdr", "cdr,all")
                .h("AccountCode", "")
                .h("Source", &num)
                .h("Destination", &self.req.exten)
                .h("DestinationContext", &self.req.context)
                .h("CallerID", &format!("\"{name}\" <{num}>"))
                .h("Channel", &ch.name)
                .h("DestinationChannel", "")
                .h("LastApplication", &ch.app)
                .h("LastData", &ch.data)
                .h("StartTime", &crate::clock::datetime(ch.created_wall))
                .h(
                    "AnswerTime",
                    &ch.answered_wall.map(crate::clock::datetime).unwrap_or_default(),
                )
                .h("EndTime", &crate::clock::datetime(now))
                .h("Duration", &dur.to_string())
                .h("BillableSeconds", &bill.to_string())
                .h(
                    "Disposition",
                    if ch.answered_wall.is_some() {
                        "ANSWERED"
                    } else {
                        "NO ANSWER"
                    },
                )
                .h("AMAFlags", "DOCUMENTATION")
                .h("UniqueID", &ch.uniqueid)
                .h("UserField", ""),
        );
    }

    fn request(&self, name: &str, side: Side, cause: u32) {
        self.emit(name, "call,all", side, &[("Cause", &cause.to_string())]);
    }

    pub(super) fn hangup(&self, side: Side, cause: u32) {
        let txt = match cause {
            16 => "Normal Clearing",
            17 => "User busy",
            34 => "Circuit/channel congestion",
            _ => "Unknown",
        };
        self.emit(
            "Hangup",
            "call,all",
            side,
            &[("Cause", &cause.to_string()), ("Cause-txt", txt)],
        );
        self.unstore(side);
    }

    /// The hangup sequences of transcripts 02 and 03, by who ended the call.
    pub(super) fn finish(&mut self, end: End) {
        self.leave_queue(Side::One);
        self.leave_queue(Side::Two);
        self.unjoin();
        match end {
            End::TwoDialplan | End::Requested(Side::Two, _) => {
                let cause = match end {
                    End::Requested(_, c) => c,
                    _ => 16,
                };
                self.request("SoftHangupRequest", Side::Two, cause);
                self.request("HangupRequest", Side::One, cause);
                self.hangup(Side::Two, cause);
                self.hangup(Side::One, cause);
                self.device_state("NOT_INUSE");
                self.cdr(Side::One);
                self.device_state("NOT_INUSE");
            }
            End::OneApp => {
                self.request("HangupRequest", Side::Two, 0);
                self.cdr(Side::One);
                self.hangup(Side::One, 0);
                self.request("SoftHangupRequest", Side::Two, 16);
                self.hangup(Side::Two, 0);
                self.device_state("NOT_INUSE");
                self.cdr(Side::Two);
                self.device_state("NOT_INUSE");
            }
            End::OneDialplan | End::Requested(Side::One, _) => {
                let cause = match end {
                    End::Requested(_, c) => c,
                    _ => 16,
                };
                self.request("SoftHangupRequest", Side::One, cause);
                self.request("HangupRequest", Side::Two, cause);
                self.cdr(Side::One);
                self.hangup(Side::One, cause);
                self.device_state("NOT_INUSE");
                self.request("SoftHangupRequest", Side::Two, 16);
                self.cdr(Side::Two);
                self.hangup(Side::Two, 16);
                self.device_state("NOT_INUSE");
            }
            End::Unanswered(status) => {
                let cause = if status == "BUSY" { 17 } else { 34 };
                self.hangup(Side::Two, cause);
                let bus = &self.pbx.bus;
                if !self.dialect.pre_stasis() {
                    bus.send(
                        self.one
                            .ch
                            .snapshot(bus.event("DialEnd", "call,all"), "Dest")
                            .h("DialStatus", status),
                    );
                }
                self.hangup(Side::One, cause);
                if self.req.is_async {
                    self.originate_response(false);
                }
                self.device_state("NOT_INUSE");
            }
        }
    }
}
