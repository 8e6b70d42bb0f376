//! The two things pnet does not do: open the AF_PACKET socket ourselves (so that we keep its
//! descriptor) and read the kernel's drop counter (`PACKET_STATISTICS`). The only `unsafe`
//! of the gateway, in two small calls with their contracts stated.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const SOL_PACKET: libc::c_int = 263;
const PACKET_STATISTICS: libc::c_int = 6;
const ETH_P_ALL: u16 = 0x0003;

/// `struct tpacket_stats` of `<linux/if_packet.h>`.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: libc::c_uint,
    tp_drops: libc::c_uint,
}

/// A raw AF_PACKET socket for all protocols (what pnet would open), owned by the caller.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(ETH_P_ALL.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor socket(2) just returned and nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Packets the kernel handed to the socket and packets it dropped (buffer full) since the
/// last call: the kernel resets the counters on every read.
pub fn packet_statistics(fd: RawFd) -> io::Result<(u64, u64)> {
    let mut stats = TpacketStats::default();
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: `stats` and `len` are valid for writes of the sizes given, and live across the
    // call; getsockopt(2) writes at most `len` bytes.
    let result = unsafe {
        libc::getsockopt(
            fd,
            SOL_PACKET,
            PACKET_STATISTICS,
            (&mut stats as *mut TpacketStats).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((u64::from(stats.tp_packets), u64::from(stats.tp_drops)))
}

/// Asks the kernel not to deliver packets this host sends (`PACKET_IGNORE_OUTGOING`, Linux
/// 4.20): on loopback every packet is seen going out and coming in, and counting it once is
/// right.
pub fn ignore_outgoing(fd: RawFd) -> io::Result<()> {
    const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
    let on: libc::c_int = 1;
    // SAFETY: `on` is valid for reads of the size given and lives across the call.
    let result = unsafe {
        libc::setsockopt(
            fd,
            SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            (&on as *const libc::c_int).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the socket's receive buffer: bursts wait there while the capture thread catches up.
/// `SO_RCVBUFFORCE` (root, CAP_NET_ADMIN) may exceed `net.core.rmem_max`; without the
/// privilege, `SO_RCVBUF` gets what the limit allows.
pub fn set_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `size` is valid for reads of the size given and lives across the call.
        let result = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast::<libc::c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}

/// The descriptor number, for [`packet_statistics`] while pnet owns the socket.
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}
