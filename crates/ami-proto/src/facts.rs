//! Facts about AMI messages that the policy, the router, the proxy's upstream links and the
//! simulator all rely on: how lists are framed, and which headers name channels and queues.
//! Kept here, once, so that two crates can never disagree on where a list ends or what an
//! event names.

use crate::Message;

/// Whether an answer opens a list, and how that list is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFraming {
    /// Not a list: the response is the whole answer.
    None,
    /// `EventList: start` (Asterisk 13 and later): ends with `EventList: Complete`.
    Framed,
    /// Before Asterisk 13: a success whose message says the items "will follow"; ends with
    /// the `...Complete` event (or, for DBGet, its one `DBGetResponse`).
    Legacy,
}

impl ListFraming {
    /// How a response frames what follows it.
    pub fn of_response(msg: &Message) -> ListFraming {
        if !msg.get("Response").is_some_and(|v| v.eq_ignore_ascii_case("Success")) {
            ListFraming::None
        } else if msg.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("start")) {
            ListFraming::Framed
        } else if msg
            .get("Message")
            .is_some_and(|m| m.to_ascii_lowercase().contains("will follow"))
        {
            ListFraming::Legacy
        } else {
            ListFraming::None
        }
    }

    /// Whether a list item `name`d so ends a list framed this way.
    pub fn ends_with(self, msg: &Message, name: &str) -> bool {
        closes_list(msg, name) || (self == ListFraming::Legacy && name.eq_ignore_ascii_case("DBGetResponse"))
    }
}

/// An event named `...Complete`: every generation names a list's last event so.
pub fn names_complete(name: &str) -> bool {
    name.len() > 8 && name.as_bytes()[name.len() - 8..].eq_ignore_ascii_case(b"Complete")
}

/// Whether an event closes a list: `EventList: Complete` or a `...Complete` event.
pub fn closes_list(msg: &Message, name: &str) -> bool {
    msg.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete")) || names_complete(name)
}

/// Headers by which actions name a channel (by name or uniqueid), in the order the router
/// consults them.
pub const ACTION_CHANNEL_HEADERS: &[&str] = &[
    "Channel",
    "ExtraChannel",
    "ChannelId",
    "OtherChannelId",
    "Channel1",
    "Channel2",
    "Uniqueid",
    "Interface",
];

/// What an event header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Channel,
    /// A channel's uniqueid (or linkedid): resolved to a channel through live state.
    Uniqueid,
    Queue,
}

/// Whether an event header names a channel, a uniqueid or a queue: every `...Channel`
/// (`DestChannel`, `TransfererChannel`, ...), `Channel1`/`Channel2`, interfaces, every
/// `...Uniqueid`/`...Linkedid` but a bridge's, and every `...Queue`.
pub fn header_names(key: &str) -> Option<Names> {
    header_names_bytes(key.as_bytes())
}

/// [`header_names`] of a key as read from the wire.
pub fn header_names_bytes(k: &[u8]) -> Option<Names> {
    let ends = |suffix: &[u8]| k.len() >= suffix.len() && k[k.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
    if ends(b"Channel")
        || k.eq_ignore_ascii_case(b"Channel1")
        || k.eq_ignore_ascii_case(b"Channel2")
        || ends(b"Interface")
    {
        Some(Names::Channel)
    } else if (ends(b"Uniqueid") && !ends(b"BridgeUniqueid"))
        || ends(b"Linkedid")
        || ends(b"Uniqueid1")
        || ends(b"Uniqueid2")
    {
        Some(Names::Uniqueid)
    } else if ends(b"Queue") {
        Some(Names::Queue)
    } else {
        None
    }
}

/// The event that ends each list action's answer, where it is not `<Action>Complete`
/// (taken from Asterisk's `astman_send_list_complete_start` calls), by lower-case action
/// name. Read when the proxy ends a list itself (an upstream died mid-list, or several
/// lists are merged): a client library waits for the name Asterisk uses.
const LIST_ENDS: &[(&str, &str)] = &[
    ("iaxpeerlist", "PeerlistComplete"),
    ("iaxpeers", "PeerlistComplete"),
    ("iaxregistry", "RegistrationsComplete"),
    ("pjsipshowaors", "AorListComplete"),
    ("pjsipshowauths", "AuthListComplete"),
    ("pjsipshowcontacts", "ContactListComplete"),
    ("pjsipshowendpoint", "EndpointDetailComplete"),
    ("pjsipshowendpoints", "EndpointListComplete"),
    (
        "pjsipshowregistrationinboundcontactstatuses",
        "ContactStatusDetailComplete",
    ),
    ("pjsipshowregistrationsinbound", "InboundRegistrationDetailComplete"),
    ("pjsipshowregistrationsoutbound", "OutboundRegistrationDetailComplete"),
    ("pjsipshowresourcelists", "ResourceListDetailComplete"),
    ("pjsipshowsubscriptionsinbound", "InboundSubscriptionDetailComplete"),
    ("pjsipshowsubscriptionsoutbound", "OutboundSubscriptionDetailComplete"),
    ("sippeers", "PeerlistComplete"),
    ("sipshowregistry", "RegistrationsComplete"),
    ("voicemailboxsummary", "VoicemailBoxDetailComplete"),
    ("voicemailuserstatus", "VoicemailUserDetailComplete"),
    ("voicemailuserslist", "VoicemailUserEntryComplete"),
];

/// Canonical spellings of list actions whose end is `<Action>Complete`, by lower-case
/// name: a client may write `Action: coreshowchannels`, Asterisk still ends the list with
/// `CoreShowChannelsComplete`.
const LIST_ACTIONS: &[&str] = &[
    "Agents",
    "BridgeInfo",
    "BridgeList",
    "BridgeTechnologyList",
    "ConfbridgeList",
    "ConfbridgeListRooms",
    "CoreShowChannelMap",
    "CoreShowChannels",
    "DAHDIShowChannels",
    "DAHDIShowStatus",
    "DBGet",
    "DBGetTree",
    "DeviceStateList",
    "ExtensionStateList",
    "FAXSessions",
    "MeetmeList",
    "MeetmeListRooms",
    "MWIGet",
    "ParkedCalls",
    "Parkinglots",
    "PresenceStateList",
    "PRIShowSpans",
    "QueueStatus",
    "QueueSummary",
    "ShowDialPlan",
    "Status",
];

/// The name of the event that ends the list an action (as the client wrote it) is answered
/// with.
pub fn list_end_event(action: &str) -> String {
    let action = action.trim();
    let lc = action.to_ascii_lowercase();
    if let Some((_, end)) = LIST_ENDS.iter().find(|(a, _)| *a == lc) {
        return (*end).to_owned();
    }
    let name = LIST_ACTIONS
        .iter()
        .find(|a| a.eq_ignore_ascii_case(action))
        .copied()
        .unwrap_or(action);
    format!("{name}Complete")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageBuilder;

    #[test]
    fn list_framing() {
        let framed = MessageBuilder::success(None, "Channels will follow");
        let framed = framed.with_header("EventList", "start");
        assert_eq!(ListFraming::of_response(&framed), ListFraming::Framed);
        let legacy = MessageBuilder::success(None, "Channels will follow");
        assert_eq!(ListFraming::of_response(&legacy), ListFraming::Legacy);
        assert_eq!(
            ListFraming::of_response(&MessageBuilder::error(None, "x")),
            ListFraming::None
        );
        let item = MessageBuilder::event("DBGetResponse").build();
        assert!(ListFraming::Legacy.ends_with(&item, "DBGetResponse"));
        assert!(!ListFraming::Framed.ends_with(&item, "DBGetResponse"));
        let done = MessageBuilder::event("StatusComplete").build();
        assert!(closes_list(&done, "StatusComplete"));
        assert!(!closes_list(&done, "Complete"));
    }

    #[test]
    fn headers_that_name_objects() {
        assert_eq!(header_names("DestChannel"), Some(Names::Channel));
        assert_eq!(header_names("Channel2"), Some(Names::Channel));
        assert_eq!(header_names("Interface"), Some(Names::Channel));
        assert_eq!(header_names("Linkedid"), Some(Names::Uniqueid));
        assert_eq!(header_names("BridgeUniqueid"), None);
        assert_eq!(header_names("Queue"), Some(Names::Queue));
        assert_eq!(header_names("Context"), None);
    }

    #[test]
    fn list_ends_are_named_as_asterisk_names_them() {
        assert_eq!(list_end_event("coreshowchannels"), "CoreShowChannelsComplete");
        assert_eq!(list_end_event(" sippeers "), "PeerlistComplete");
        assert_eq!(list_end_event("PJSIPShowEndpoints"), "EndpointListComplete");
        assert_eq!(list_end_event("SomeModuleList"), "SomeModuleListComplete");
    }
}
