//! SDP tests: real offers as Chromium, Firefox and webrtc-rs write them,
//! offer/answer round trips, and every error.
#![allow(clippy::unwrap_used)]

use super::*;

const CHROMIUM: &str = include_str!("testdata/chromium_datachannel.sdp");
const CHROMIUM_AV: &str = include_str!("testdata/chromium_audio_datachannel.sdp");
const FIREFOX: &str = include_str!("testdata/firefox_datachannel.sdp");
const WEBRTC_RS: &str = include_str!("testdata/webrtc_rs_datachannel.sdp");

fn hex(s: &str) -> Vec<u8> {
    s.split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn fingerprint_line(sdp: &str) -> Vec<u8> {
    let line = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=fingerprint:sha-256 "))
        .unwrap();
    hex(line.trim())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn local() -> LocalDescription {
    LocalDescription {
        session_id: 1234567890123,
        ice_ufrag: "SrvU".to_owned(),
        ice_pwd: "srvpwd0123456789abcdefgh".to_owned(),
        fingerprint: [0xab; 32],
        max_message_size: 262_144,
        candidates: vec![addr("192.0.2.10:3478"), addr("[2001:db8::10]:3478")],
    }
}

#[test]
fn chromium_offer() {
    let o = parse_offer(CHROMIUM).unwrap();
    assert_eq!(o.session_id, 4611731400430051336);
    assert_eq!((o.ice_ufrag.as_str(), o.ice_pwd.as_str()), ("Vq3H", "9x0b4w6WBGKzH8R7P1pQ2mNs"));
    assert!(!o.ice_lite);
    assert_eq!(o.sha256().unwrap().to_vec(), fingerprint_line(CHROMIUM));
    assert_eq!(o.setup, Setup::Actpass);
    assert_eq!(o.mid.as_deref(), Some("0"));
    assert!(o.bundle);
    assert_eq!((o.sctp_port, o.max_message_size), (5000, Some(262_144)));
    // The mDNS host candidate is skipped; the srflx one is kept.
    assert_eq!(
        o.candidates,
        vec![Candidate {
            foundation: "842163049".to_owned(),
            component: 1,
            priority: 1677729535,
            address: addr("203.0.113.45:56143"),
            kind: CandidateType::Srflx,
        }]
    );
    assert_eq!(o.other_media, OtherMediaLines::default());
}

#[test]
fn firefox_offer() {
    // Fingerprint at session level, credentials after the candidates, a TCP
    // candidate (skipped), max-message-size near 1 GiB.
    let o = parse_offer(FIREFOX).unwrap();
    assert_eq!((o.ice_ufrag.as_str(), o.ice_pwd.as_str()), ("3f2a9b1c", "c7d8e1a2b3f40516273849aabbccddee"));
    assert_eq!(o.sha256().unwrap().to_vec(), fingerprint_line(FIREFOX));
    assert_eq!(o.setup, Setup::Actpass);
    assert_eq!(o.mid.as_deref(), Some("0"));
    assert!(o.bundle);
    assert_eq!(o.max_message_size, Some(1_073_741_823));
    assert_eq!(o.candidates.len(), 1);
    assert_eq!(o.candidates[0].address, addr("198.51.100.23:49785"));
}

#[test]
fn webrtc_rs_offer() {
    let o = parse_offer(WEBRTC_RS).unwrap();
    assert_eq!(o.ice_ufrag, "VkpBBnCxmgkdFHgl");
    assert_eq!(o.sha256().unwrap().to_vec(), fingerprint_line(WEBRTC_RS));
    // No max-message-size: the RFC 8841 default applies.
    assert_eq!(o.max_message_size, None);
    let addrs: Vec<_> = o.candidates.iter().map(|c| c.address).collect();
    assert_eq!(addrs, vec![addr("192.0.2.5:54321"), addr("[2001:db8::5]:54322")]);
    assert!(o.candidates.iter().all(|c| c.kind == CandidateType::Host));
}

#[test]
fn answer_to_chromium() {
    let offer = parse_offer(CHROMIUM).unwrap();
    let answer = Answer::for_offer(&offer, &local());
    let text = write_answer(&answer);
    let lines: Vec<&str> = text.split("\r\n").collect();
    for want in [
        "v=0",
        "a=ice-lite",
        "a=ice-options:ice2",
        "a=group:BUNDLE 0",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=ice-ufrag:SrvU",
        "a=ice-pwd:srvpwd0123456789abcdefgh",
        "a=setup:passive",
        "a=sctp-port:5000",
        "a=max-message-size:262144",
        "a=candidate:1 1 UDP 2130706431 192.0.2.10 3478 typ host",
        "a=candidate:2 1 UDP 2130706175 2001:db8::10 3478 typ host",
        "a=end-of-candidates",
    ] {
        assert!(lines.contains(&want), "{want:?} missing in\n{text}");
    }
    let fp = lines
        .iter()
        .find_map(|l| l.strip_prefix("a=fingerprint:sha-256 "))
        .unwrap();
    assert_eq!(hex(fp), vec![0xab; 32]);
    // Session-level attributes come before the m-line.
    let m = lines.iter().position(|l| l.starts_with("m=")).unwrap();
    assert!(lines.iter().position(|l| *l == "a=ice-lite").unwrap() < m);

    // Strict: Firefox's parser finds nothing to warn about.
    let strict = webrtc_sdp::parse_sdp(&text, true).unwrap();
    assert!(strict.warnings.is_empty());
    // And it reads back as it was written.
    assert_eq!(parse_answer(&text).unwrap(), answer);
}

#[test]
fn answer_rejects_other_media() {
    let offer = parse_offer(CHROMIUM_AV).unwrap();
    assert_eq!(offer.mid.as_deref(), Some("1"));
    assert_eq!(offer.other_media.before.len(), 1);
    assert_eq!(offer.other_media.before[0].mid.as_deref(), Some("0"));
    let answer = Answer::for_offer(&offer, &local());
    let text = write_answer(&answer);
    let mlines: Vec<&str> = text.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        mlines,
        vec![
            "m=audio 0 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"
        ]
    );
    assert!(text.contains("a=group:BUNDLE 1\r\n"));
    let back = parse_answer(&text).unwrap();
    assert_eq!(back.mid.as_deref(), Some("1"));
    assert_eq!(back.other_media.before.len(), 1);
}

#[test]
fn native_offer_answer_round_trip() {
    let client = LocalDescription {
        session_id: 42,
        ice_ufrag: "CliU".to_owned(),
        ice_pwd: "clientpwd+/0123456789abc".to_owned(),
        fingerprint: [0x5a; 32],
        max_message_size: 65536,
        candidates: vec![addr("198.51.100.7:50000")],
    };
    let offer = Offer::native(&client);
    let text = write_offer(&offer);
    assert!(text.contains("a=setup:actpass\r\n"));
    assert!(!text.contains("a=ice-lite"));
    assert_eq!(parse_offer(&text).unwrap(), offer);

    let answer = Answer::for_offer(&offer, &local());
    let back = parse_answer(&write_answer(&answer)).unwrap();
    assert_eq!(back, answer);
    assert!(back.ice_lite);
    assert_eq!(back.setup, Setup::Passive);
    assert_eq!(back.candidates, local().candidates);
    assert_eq!(back.fingerprint, [0xab; 32]);
}

/// `CHROMIUM` with `from` replaced by `to` (which must be there).
fn edit(from: &str, to: &str) -> String {
    assert!(CHROMIUM.contains(from), "{from:?}");
    CHROMIUM.replace(from, to)
}

#[test]
fn every_error() {
    let sha256 = format!("a=fingerprint:sha-256 {}\r\n", {
        let line = CHROMIUM
            .lines()
            .find_map(|l| l.strip_prefix("a=fingerprint:sha-256 "))
            .unwrap();
        line.to_owned()
    });
    let cases: Vec<(String, SdpError)> = vec![
        ("x".repeat(MAX_SDP_LEN + 1), SdpError::TooLarge(MAX_SDP_LEN + 1)),
        (
            edit("m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=application 0 UDP/DTLS/SCTP webrtc-datachannel"),
            SdpError::NoDataChannel,
        ),
        (
            edit("m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=application 9 DTLS/SCTP 5000"),
            SdpError::NoDataChannel,
        ),
        (edit("a=ice-ufrag:Vq3H\r\n", ""), SdpError::MissingIceUfrag),
        (edit("a=ice-pwd:9x0b4w6WBGKzH8R7P1pQ2mNs\r\n", ""), SdpError::MissingIcePwd),
        (edit("a=ice-pwd:9x0b4w6WBGKzH8R7P1pQ2mNs", "a=ice-pwd:short"), SdpError::InvalidIceCredentials),
        (edit("a=ice-ufrag:Vq3H", "a=ice-ufrag:V-3H"), SdpError::InvalidIceCredentials),
        (edit(&sha256, ""), SdpError::MissingFingerprint),
        (
            edit(&sha256, "a=fingerprint:sha-1 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33\r\n"),
            SdpError::MissingFingerprint,
        ),
        (edit("a=setup:actpass\r\n", ""), SdpError::MissingSetup),
        (edit("a=setup:actpass", "a=setup:passive"), SdpError::UnsupportedSetup(Setup::Passive)),
        (edit("a=setup:actpass", "a=setup:holdconn"), SdpError::UnsupportedSetup(Setup::Holdconn)),
        (edit("a=sctp-port:5000", "a=sctp-port:0"), SdpError::InvalidSctpPort(0)),
    ];
    for (sdp, want) in cases {
        assert_eq!(parse_offer(&sdp), Err(want.clone()), "{want}");
    }
    // The parser itself refuses a port over 16 bits.
    assert!(matches!(
        parse_offer(&edit("a=sctp-port:5000", "a=sctp-port:70000")),
        Err(SdpError::Parse(_))
    ));
    // Not SDP at all.
    assert!(matches!(parse_offer(""), Err(SdpError::Parse(_))));
    assert!(matches!(parse_offer(&"garbage\r\n".repeat(10)), Err(SdpError::Parse(_))));
    // Only audio.
    let audio = CHROMIUM_AV
        .split("m=application")
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(parse_offer(&audio), Err(SdpError::NoDataChannel));
    // Too many m-lines.
    let many = format!(
        "{CHROMIUM}{}",
        "m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n".repeat(MAX_MEDIA)
    );
    assert_eq!(parse_offer(&many), Err(SdpError::TooManyMedia(MAX_MEDIA + 1)));
    // `active` is accepted in an offer (RFC 4145) ...
    assert_eq!(parse_offer(&edit("a=setup:actpass", "a=setup:active")).unwrap().setup, Setup::Active);
    // ... but not in the answer to our offer (we are the DTLS client).
    let answer = write_answer(&Answer::for_offer(&parse_offer(CHROMIUM).unwrap(), &local()));
    let active = answer.replace("a=setup:passive", "a=setup:active");
    assert_eq!(parse_answer(&active), Err(SdpError::UnsupportedSetup(Setup::Active)));
    let no_fp: String = answer
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=fingerprint"))
        .collect();
    assert_eq!(parse_answer(&no_fp), Err(SdpError::MissingFingerprint));
}
