//! The compelled-server attack catalogue.
//!
//! Rempart's claim is that an operator forced to help read messages cannot
//! do it without its users seeing it. The test binary `tests/attacks.rs`
//! runs the server as the attacker: either the real server whose state is
//! forged the way an operator with write access to its database and its
//! directory key could (`rempart_testkit`'s forge helpers), or the real
//! server behind a proxy that rewrites what one client is shown
//! (`rempart_testkit::Proxy`). The clients under test are the unmodified
//! `rempart-client`. None of this is reachable from a server build: it lives
//! in test-only crates.
//!
//! [`ATTACKS`] lists every attack with what the user sees; SECURITY.md
//! publishes the same table, and the suite checks that it does.

/// One attack the suite performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attack {
    /// Its number in SECURITY.md.
    pub number: u8,
    /// The name of its test.
    pub test: &'static str,
    /// What the attacking server does.
    pub attacker: &'static str,
    /// What the user sees: the alert code, or the behaviour.
    pub user_sees: &'static str,
}

/// Every attack of the suite, in SECURITY.md's order.
pub const ATTACKS: &[Attack] = &[
    Attack {
        number: 1,
        test: "ghost_device",
        attacker: "adds a device to a user's device list without the account key, and publishes it",
        user_sees: "peers: `device_list_signature_invalid`, the ghost is never added; the owner: `unknown_own_device`",
    },
    Attack {
        number: 2,
        test: "account_key_substitution",
        attacker: "publishes a device list under a new account key for a user (a fake \"reset\")",
        user_sees: "`account_key_changed`; no device of the new key is added",
    },
    Attack {
        number: 3,
        test: "key_substitution_in_a_verified_conversation",
        attacker: "substitutes the account key of a contact whose safety number was verified",
        user_sees: "`account_key_changed`, and sending stops until the user verifies the new number",
    },
    Attack {
        number: 4,
        test: "unproven_device_list",
        attacker: "shows one peer a device list it did not publish in the directory, beside a valid proof",
        user_sees: "`kt_proof_invalid`; nothing is encrypted",
    },
    Attack {
        number: 5,
        test: "split_view",
        attacker: "signs two different heads for one epoch and shows each to a different member",
        user_sees: "`directory_equivocation` on both sides (heads compared inside the conversation), with both heads kept as evidence",
    },
    Attack {
        number: 6,
        test: "hidden_epoch",
        attacker: "keeps one member on an old epoch by withholding the newer heads",
        user_sees: "`directory_rollback` once a member's message carries a newer head",
    },
    Attack {
        number: 7,
        test: "rollback",
        attacker: "restarts from an older copy of its data",
        user_sees: "`directory_rollback` for every client that saw a newer head",
    },
    Attack {
        number: 8,
        test: "witness_quorum_missing",
        attacker: "serves heads its witnesses never cosigned (a directory forked away from them)",
        user_sees: "`witness_quorum_missing`",
    },
    Attack {
        number: 9,
        test: "ghost_member",
        attacker: "has a commit adding a device that is not in its owner's signed device list merged into a group",
        user_sees: "`unauthorized_member`; the commit is not merged",
    },
    Attack {
        number: 10,
        test: "key_package_substitution",
        attacker: "answers a KeyPackage claim with a package whose key is not in the user's device list",
        user_sees: "`unauthorized_member`, before any Welcome is sent",
    },
    Attack {
        number: 11,
        test: "dropped_message",
        attacker: "drops a message from a conversation's log and numbers the log around the hole",
        user_sees: "`message_gap` naming the conversation (each device numbers its own messages inside the encryption)",
    },
    Attack {
        number: 12,
        test: "replayed_message",
        attacker: "serves every log entry twice, and replays the last one as a new entry",
        user_sees: "each message once, no alert; the message the replay displaced is reported as `message_gap`, and the conversation goes on",
    },
    Attack {
        number: 13,
        test: "withheld_removal",
        attacker: "hides a member's removal from another member, numbering the log around it",
        user_sees: "`message_gap` (a message of an epoch the device never reached); it reads nothing it should not, and neither does the removed member",
    },
    Attack {
        number: 14,
        test: "delivery_to_a_removed_member",
        attacker: "keeps serving a removed member the conversation's log",
        user_sees: "the removed member sees its removal and decrypts nothing sent after it",
    },
    Attack {
        number: 15,
        test: "ciphersuite_downgrade",
        attacker: "answers a KeyPackage claim with a validly signed package in a weaker ciphersuite",
        user_sees: "`ciphersuite_downgrade`; nothing is encrypted, no Welcome is sent",
    },
    Attack {
        number: 16,
        test: "forced_last_resort",
        attacker: "withholds a user's one-time KeyPackages, so that the reused last-resort one is claimed",
        user_sees: "the conversation works, and its owner sees `last_resort_used`",
    },
    Attack {
        number: 17,
        test: "forked_conversation",
        attacker: "accepts two commits for one epoch of a group and shows each member its own (a fork)",
        user_sees: "`conversation_fork` as soon as a member is shown the other commit",
    },
    Attack {
        number: 18,
        test: "replayed_commit",
        attacker: "shows a member every commit twice, the copy as a new entry",
        user_sees: "nothing: the copy is refused, and the member keeps the same epoch and roster as everyone",
    },
    Attack {
        number: 19,
        test: "external_join",
        attacker: "puts in a group's log an external commit by which its own device joins (from a leaked GroupInfo)",
        user_sees: "`unauthorized_member`; the commit is not merged",
    },
    Attack {
        number: 20,
        test: "silent_eviction",
        attacker: "refuses a member the conversation's log with no commit removing it, while the others keep writing to her",
        user_sees: "`conversation_withheld` naming the conversation, once while it lasts; she keeps the conversation, reads what she missed once served again, and the roster gains nobody",
    },
    Attack {
        number: 21,
        test: "removal_hidden_from_the_removed_member",
        attacker: "withholds from a removed member the commit that removed her, refusing her the log",
        user_sees: "`conversation_withheld`; once the commit is served, her removal and by whom, and nothing sent after it",
    },
    Attack {
        number: 22,
        test: "public_message_commit",
        attacker: "accepts a member's commit sent as an MLS PublicMessage, against the group's policy of encrypted commits",
        user_sees: "`invalid_commit` for every member, naming the conversation and the sender device; the commit is not merged, the sender's next commit under the policy is, and the members go on sending, adding, removing and updating",
    },
    Attack {
        number: 23,
        test: "truncated_commit",
        attacker: "accepts a truncated commit, which no member can parse",
        user_sees: "`invalid_commit` for every member; the conversation goes on as above",
    },
    Attack {
        number: 24,
        test: "injected_commit",
        attacker: "appends a commit of its own making (a member's message replayed as a commit, from a device of no member) and counts it as an epoch",
        user_sees: "`invalid_commit` for every member; the conversation goes on as above",
    },
    Attack {
        number: 25,
        test: "ghost_device_during_the_quorum_wait",
        attacker: "forks away from its witness and shows a ghost device of a contact under a head nobody cosigned",
        user_sees: "`witness_quorum_missing` after the bounded wait for cosignatures; nothing is encrypted to the ghost",
    },
    Attack {
        number: 26,
        test: "replayed_device_list",
        attacker: "answers a lookup with an older device list of a contact, validly signed and proven at its own epoch, that still holds a device the contact removed",
        user_sees: "`directory_rollback`; the removed device does not come back",
    },
    Attack {
        number: 27,
        test: "endless_log_page",
        attacker: "answers every read of a conversation's log with a full page of entries the device already has, always saying there is more",
        user_sees: "the sync ends with a typed error (the log is not well-formed) after one such page, with no hang; served honestly again, the conversation goes on",
    },
    Attack {
        number: 28,
        test: "tampered_link_request",
        attacker: "answers a device waiting to link a new one with a sealed request of its own: one replayed from an earlier link, then one with a byte changed",
        user_sees: "the typed error that the link was tampered with, each time; no device is added to the account",
    },
    Attack {
        number: 29,
        test: "mail_address_given_to_another_account",
        attacker: "binds a user's mail address to a certificate of its own: first shown to one sender beside the genuine proofs, then published in the directory under an account it made",
        user_sees: "the sender shown it: `kt_proof_invalid`, nothing kept; a sender who had the genuine certificate: `mail_key_changed`, the new one kept aside, unused; the owner: `unknown_own_mail_key` at every sync (a sender who never looked the address up accepts the published binding: the owner's alert is what reveals it)",
    },
    Attack {
        number: 30,
        test: "older_mail_key",
        attacker: "publishes again a user's older device list, which binds the mail certificate the user replaced",
        user_sees: "a sender who saw the newer one: `directory_rollback`, the newer certificate stays; the owner: `unknown_own_mail_key`",
    },
    Attack {
        number: 31,
        test: "mail_address_given_away_and_back",
        attacker: "gives a user's mail address to an account of its own for a while, then gives it back, all between two of the owner's syncs",
        user_sees: "the owner: `unknown_own_mail_key` from the address's key history (the current binding looks genuine again), at every sync",
    },
];
