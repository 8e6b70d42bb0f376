use proptest::prelude::*;

use super::*;

fn frames(framer: &mut TcpFramer) -> Vec<Frame> {
    std::iter::from_fn(|| framer.next_frame()).collect()
}

fn message(text: &str) -> Frame {
    Frame::Message(text.as_bytes().to_vec())
}

#[test]
fn octet_counted_and_line_framed_messages_mix() {
    let mut framer = TcpFramer::new(1024);
    framer.push(b"11 <13>1 - x y\n<13>Nov 25 10:00:00 gw charon: hi\r\n\n5 abcde");
    assert_eq!(
        frames(&mut framer),
        vec![
            message("<13>1 - x y"),
            message("<13>Nov 25 10:00:00 gw charon: hi"),
            message("abcde"),
        ]
    );
    assert_eq!(framer.finish(), None);
}

#[test]
fn frames_split_at_every_byte_come_out_the_same() {
    let stream = b"11 <13>1 - x y\nline two\n3 abc";
    let mut whole = TcpFramer::new(1024);
    whole.push(stream);
    let expected = frames(&mut whole);
    let mut framer = TcpFramer::new(1024);
    let mut got = Vec::new();
    for byte in stream {
        framer.push(std::slice::from_ref(byte));
        got.extend(frames(&mut framer));
    }
    assert_eq!(got, expected);
}

#[test]
fn oversized_messages_are_cut_and_the_stream_stays_in_sync() {
    let mut framer = TcpFramer::new(8);
    // Octet-counted: 20 bytes announced, the rest arrives later and is skipped.
    framer.push(b"20 0123456789");
    assert_eq!(
        frames(&mut framer),
        vec![Frame::Oversized {
            prefix: b"01234567".to_vec(),
            len: 20
        }]
    );
    framer.push(b"0123456789");
    framer.push(b"3 abc");
    assert_eq!(frames(&mut framer), vec![message("abc")]);
    // Line-framed without a newline in sight: cut, then skip to the newline.
    framer.push(b"a very long line without end");
    assert_eq!(
        frames(&mut framer),
        vec![Frame::Oversized {
            prefix: b"a very l".to_vec(),
            len: 28
        }]
    );
    framer.push(b" still going\nnext\n");
    assert_eq!(frames(&mut framer), vec![message("next")]);
}

#[test]
fn a_last_message_without_newline_is_kept_at_close() {
    let mut framer = TcpFramer::new(64);
    framer.push(b"no newline at the end");
    assert_eq!(frames(&mut framer), vec![]);
    assert_eq!(framer.finish(), Some(message("no newline at the end")));
}

#[test]
fn hostile_bytes_pass_through_unchanged() {
    let mut framer = TcpFramer::new(64);
    framer.push(b"<13>x \x1b[2J\x00\xff\r\n");
    assert_eq!(
        frames(&mut framer),
        vec![Frame::Message(b"<13>x \x1b[2J\x00\xff".to_vec())]
    );
}

proptest! {
    #[test]
    fn framing_never_panics_and_stays_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32),
    ) {
        let mut framer = TcpFramer::new(32);
        for chunk in chunks {
            framer.push(&chunk);
            for frame in frames(&mut framer) {
                match frame {
                    Frame::Message(bytes) => prop_assert!(bytes.len() <= 32),
                    Frame::Oversized { prefix, len } => {
                        prop_assert!(prefix.len() <= 32);
                        prop_assert!(len > 32);
                    }
                }
            }
            prop_assert!(framer.buffer.len() <= 32 + 64 + 12);
        }
    }
}
