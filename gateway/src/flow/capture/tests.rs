use super::*;

/// The message of a failed open: `step` failed with the OS error `errno`.
#[track_caller]
fn check_open_message(step: OpenStep, errno: i32, expect: &str) {
    let error = CaptureError::Open {
        interface: "ipsec0".to_owned(),
        step,
        source: std::io::Error::from_raw_os_error(errno),
    };
    assert_eq!(error.to_string(), expect);
}

#[test]
fn only_a_refused_permission_is_blamed_on_privileges() {
    check_open_message(
        OpenStep::Socket,
        libc::EPERM,
        "cannot capture on ipsec0: socket(AF_PACKET, SOCK_RAW) failed: Operation not permitted (os error 1) (capturing needs root or CAP_NET_RAW)",
    );
    check_open_message(
        OpenStep::Bind { ifindex: 7 },
        libc::EACCES,
        "cannot capture on ipsec0: bind to interface index 7 failed: Permission denied (os error 13) (capturing needs root or CAP_NET_RAW)",
    );
}

#[test]
fn a_ring_the_kernel_refuses_names_the_step_and_the_error() {
    check_open_message(
        OpenStep::RxRing {
            block_bytes: 4 << 20,
            block_count: 16,
        },
        libc::ENOMEM,
        "cannot capture on ipsec0: setsockopt(PACKET_RX_RING) for 16 blocks of 4194304 bytes failed: Cannot allocate memory (os error 12)",
    );
    check_open_message(
        OpenStep::RxRing {
            block_bytes: 4096,
            block_count: 1,
        },
        libc::EINVAL,
        "cannot capture on ipsec0: setsockopt(PACKET_RX_RING) for 1 blocks of 4096 bytes failed: Invalid argument (os error 22)",
    );
    check_open_message(
        OpenStep::Mmap { bytes: 64 << 20 },
        libc::ENOMEM,
        "cannot capture on ipsec0: mmap of the 67108864-byte ring failed: Cannot allocate memory (os error 12)",
    );
    check_open_message(
        OpenStep::PacketVersion,
        libc::EINVAL,
        "cannot capture on ipsec0: setsockopt(PACKET_VERSION, TPACKET_V3) failed: Invalid argument (os error 22)",
    );
    check_open_message(
        OpenStep::Bind { ifindex: 9 },
        libc::ENODEV,
        "cannot capture on ipsec0: bind to interface index 9 failed: No such device (os error 19)",
    );
}

#[test]
fn the_privilege_hint_is_for_eperm_and_eacces_only() {
    for errno in [libc::EPERM, libc::EACCES] {
        let error = std::io::Error::from_raw_os_error(errno);
        assert!(!privilege_hint(&error).is_empty(), "{error}");
    }
    for errno in [
        libc::ENOMEM,
        libc::EINVAL,
        libc::ENODEV,
        libc::ENXIO,
        libc::ENETDOWN,
        libc::EBUSY,
        libc::EAFNOSUPPORT,
    ] {
        let error = std::io::Error::from_raw_os_error(errno);
        assert_eq!(privilege_hint(&error), "", "{error}");
    }
}

#[test]
fn the_interface_is_lost_when_its_name_is_gone_or_has_another_index() {
    assert_eq!(LostReason::of(5, Some(5)), None);
    assert_eq!(LostReason::of(5, None), Some(LostReason::Removed));
    assert_eq!(
        LostReason::of(5, Some(9)),
        Some(LostReason::Replaced {
            old_index: 5,
            new_index: 9
        })
    );
    assert_eq!(
        LostReason::of(5, Some(9)).map(|reason| reason.to_string()),
        Some("the interface was replaced (index 5, now 9)".to_owned())
    );
}
