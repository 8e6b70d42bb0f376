//! The libc calls of the live capture, the only `unsafe` of the gateway, each with its
//! contract stated: the AF_PACKET socket that pnet reads (opened here so that we keep its
//! descriptor), the kernel's drop counters (`PACKET_STATISTICS`), the TPACKET_V3 receive
//! ring ([`Ring`]): the mapping, `poll(2)`, and handing blocks back and forth with the kernel,
//! and the index an interface name has now ([`interface_index`]), which tells the capture
//! thread that its interface is gone.
//!
//! Opening a ring fails with the step that failed ([`OpenStep`]) beside the OS's error, so
//! that the message names the system call (an `ENOMEM` of `PACKET_RX_RING` is not a missing
//! privilege).
//!
//! What is in a block is read by the safe, pure [`super::block`] walker; this module only
//! hands out each block the kernel has finished as a byte slice, and takes it back.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

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

/// The step of opening a capture socket that failed, named in the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenStep {
    /// `socket(AF_PACKET, SOCK_RAW)`: the step that needs root or CAP_NET_RAW.
    Socket,
    /// The ring's shape, checked before any system call.
    RingShape,
    /// `setsockopt(PACKET_VERSION)`: TPACKET_V3 needs Linux 3.2.
    PacketVersion,
    /// `setsockopt(PACKET_IGNORE_OUTGOING)` on loopback: Linux 4.20.
    IgnoreOutgoing,
    /// `setsockopt(PACKET_RX_RING)`: the kernel allocates the ring's blocks.
    RxRing {
        block_bytes: usize,
        block_count: usize,
    },
    /// `mmap` of the ring into the process.
    Mmap { bytes: usize },
    /// `bind` to the interface's index.
    Bind { ifindex: u32 },
    /// pnet's AF_PACKET channel (its `bind` and options).
    Channel,
    /// Starting the capture thread.
    Thread,
}

impl std::fmt::Display for OpenStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenStep::Socket => f.write_str("socket(AF_PACKET, SOCK_RAW)"),
            OpenStep::RingShape => f.write_str("checking the ring's shape"),
            OpenStep::PacketVersion => f.write_str("setsockopt(PACKET_VERSION, TPACKET_V3)"),
            OpenStep::IgnoreOutgoing => f.write_str("setsockopt(PACKET_IGNORE_OUTGOING)"),
            OpenStep::RxRing {
                block_bytes,
                block_count,
            } => write!(
                f,
                "setsockopt(PACKET_RX_RING) for {block_count} blocks of {block_bytes} bytes"
            ),
            OpenStep::Mmap { bytes } => write!(f, "mmap of the {bytes}-byte ring"),
            OpenStep::Bind { ifindex } => write!(f, "bind to interface index {ifindex}"),
            OpenStep::Channel => f.write_str("opening pnet's AF_PACKET channel"),
            OpenStep::Thread => f.write_str("starting the capture thread"),
        }
    }
}

/// A step of opening a capture socket failed, with the OS's error.
#[derive(Debug)]
pub struct SetupError {
    pub step: OpenStep,
    pub source: io::Error,
}

/// Tags an `io::Result` with the step it came from.
trait Step<T> {
    fn at(self, step: OpenStep) -> Result<T, SetupError>;
}

impl<T> Step<T> for io::Result<T> {
    fn at(self, step: OpenStep) -> Result<T, SetupError> {
        self.map_err(|source| SetupError { step, source })
    }
}

/// A raw AF_PACKET socket for all protocols (what pnet would open), owned by the caller.
pub fn packet_socket() -> Result<OwnedFd, SetupError> {
    raw_packet_socket(ETH_P_ALL).at(OpenStep::Socket)
}

/// The index the interface named `name` has now (`if_nametoindex(3)`), `None` if there is
/// none. A new interface of the same name has a new index.
pub fn interface_index(name: &str) -> io::Result<Option<u32>> {
    // A name with a NUL byte in it names no interface.
    let Ok(name) = std::ffi::CString::new(name) else {
        return Ok(None);
    };
    // SAFETY: `name` is a valid NUL-terminated string that lives across the call;
    // if_nametoindex(3) only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENODEV | libc::ENXIO) => Ok(None),
            _ => Err(error),
        };
    }
    Ok(Some(index))
}

/// A raw AF_PACKET socket; with `protocol` 0 it receives nothing until it is bound.
fn raw_packet_socket(protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(protocol.to_be()),
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
    let on: libc::c_int = 1;
    set_packet_option(fd, libc::PACKET_IGNORE_OUTGOING, &on)
}

/// `setsockopt(fd, SOL_PACKET, option, value)` for a plain-data `value`.
fn set_packet_option<T: Copy>(fd: RawFd, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid, initialised `T` (plain data: integers and the
    // `tpacket_req3` struct) for reads of `size_of::<T>()` bytes and lives across the call;
    // setsockopt(2) only reads it.
    let result = unsafe {
        libc::setsockopt(
            fd,
            SOL_PACKET,
            option,
            (value as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
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

/// The socket's pending error (`SO_ERROR`), which reading clears; `None` if there is none.
/// A packet socket whose interface went down or away holds `ENETDOWN` and `poll` reports
/// `POLLERR` until it is read (pnet only says "Unexpected poll event" and leaves it).
pub fn take_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut code: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `code` and `len` are valid for writes of the sizes given, and live across the
    // call; getsockopt(2) writes at most `len` bytes.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut code as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
}

/// The descriptor number, for [`packet_statistics`] while pnet owns the socket.
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

/// The shape of a [`Ring`]: `block_count` blocks of `block_bytes` each. A frame longer than a
/// block (less its headers) is cut to fit, and the frame says so (`tp_snaplen < tp_len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingShape {
    /// A multiple of the page size.
    pub block_bytes: usize,
    pub block_count: usize,
    /// The kernel hands over a block that is not full after this long (its retire timer).
    pub retire_after: Duration,
}

/// `tp_frame_size`: with TPACKET_V3 frames have the size they need; the kernel only checks
/// that blocks divide into frames of this size.
const NOMINAL_FRAME_BYTES: usize = 2048;

/// The page size, which block sizes must be a multiple of.
pub fn page_size() -> usize {
    // SAFETY: sysconf(3) takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// Counters of a ring socket since the last read (the kernel resets them on every read):
/// `struct tpacket_stats_v3`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStatistics {
    /// Frames the kernel handed to the socket, dropped ones included.
    pub packets: u64,
    /// Frames the kernel dropped: every block was still with the reader.
    pub drops: u64,
    /// Times the ring filled up (every block with the reader).
    pub freezes: u64,
}

/// An AF_PACKET socket with a TPACKET_V3 receive ring (`PACKET_RX_RING`) mapped into this
/// process. The kernel fills blocks of frames and hands each over by setting its status to
/// `TP_STATUS_USER`; [`Ring::next_block`] lends out the next one in order, and dropping the
/// [`Block`] hands it back (`TP_STATUS_KERNEL`). Dropping the ring unmaps it and closes the
/// socket.
#[derive(Debug)]
pub struct Ring {
    map: NonNull<u8>,
    map_bytes: usize,
    block_bytes: usize,
    block_count: usize,
    next_block: usize,
    // Declared last: closed after the mapping is gone (Drop unmaps first in any case).
    socket: OwnedFd,
}

// SAFETY: the mapping belongs to the ring alone (no copies of the pointer leave it other than
// through `Block`s, which borrow the ring mutably), and the kernel's side of it does not
// depend on which thread reads it: moving the ring to the capture thread is sound.
unsafe impl Send for Ring {}

impl Ring {
    /// Opens a socket on the interface `ifindex` with a ring of `shape`; on loopback,
    /// `outgoing_ignored` keeps each packet from being seen twice. The socket receives
    /// nothing until the ring is in place, then every protocol of that interface only.
    pub fn open(
        ifindex: u32,
        shape: RingShape,
        outgoing_ignored: bool,
    ) -> Result<Ring, SetupError> {
        let invalid = |message: &str| SetupError {
            step: OpenStep::RingShape,
            source: io::Error::new(io::ErrorKind::InvalidInput, message.to_owned()),
        };
        let page = page_size();
        if shape.block_bytes == 0 || !shape.block_bytes.is_multiple_of(page) {
            return Err(invalid(
                "the ring's block size must be a multiple of the page size",
            ));
        }
        if shape.block_count == 0 {
            return Err(invalid("the ring needs at least one block"));
        }
        let frames_per_block = shape.block_bytes / NOMINAL_FRAME_BYTES;
        let to_uint = |value: usize| {
            libc::c_uint::try_from(value).map_err(|_| invalid("the ring is too large"))
        };
        let map_bytes = shape
            .block_bytes
            .checked_mul(shape.block_count)
            .ok_or_else(|| invalid("the ring is too large"))?;
        let request = libc::tpacket_req3 {
            tp_block_size: to_uint(shape.block_bytes)?,
            tp_block_nr: to_uint(shape.block_count)?,
            tp_frame_size: to_uint(NOMINAL_FRAME_BYTES)?,
            tp_frame_nr: to_uint(frames_per_block.saturating_mul(shape.block_count))?,
            tp_retire_blk_tov: to_uint(shape.retire_after.as_millis().clamp(1, 60_000) as usize)?,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        let ifindex_c = libc::c_int::try_from(ifindex).map_err(|_| SetupError {
            step: OpenStep::Bind { ifindex },
            source: io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"),
        })?;

        // Protocol 0: no frame is queued before the ring exists and the socket is bound.
        let socket = raw_packet_socket(0).at(OpenStep::Socket)?;
        let fd = socket.as_raw_fd();
        set_packet_option(
            fd,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as libc::c_int),
        )
        .at(OpenStep::PacketVersion)?;
        if outgoing_ignored {
            ignore_outgoing(fd).at(OpenStep::IgnoreOutgoing)?;
        }
        set_packet_option(fd, libc::PACKET_RX_RING, &request).at(OpenStep::RxRing {
            block_bytes: shape.block_bytes,
            block_count: shape.block_count,
        })?;
        // SAFETY: a fresh shared mapping of the socket's ring, at an address the kernel
        // chooses, of exactly the size the ring was created with; the result is checked.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        let mmap_step = OpenStep::Mmap { bytes: map_bytes };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).at(mmap_step);
        }
        let Some(map) = NonNull::new(map.cast::<u8>()) else {
            return Err(io::Error::other("mmap returned a null mapping")).at(mmap_step);
        };
        // From here on, Drop unmaps it.
        let ring = Ring {
            map,
            map_bytes,
            block_bytes: shape.block_bytes,
            block_count: shape.block_count,
            next_block: 0,
            socket,
        };
        // SAFETY: `sockaddr_ll` is plain data, for which all zeroes is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::c_ushort;
        address.sll_protocol = ETH_P_ALL.to_be();
        address.sll_ifindex = ifindex_c;
        // SAFETY: `address` is a valid `sockaddr_ll` for reads of the length given and lives
        // across the call.
        let result = unsafe {
            libc::bind(
                fd,
                (&address as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error()).at(OpenStep::Bind { ifindex });
        }
        Ok(ring)
    }

    pub fn block_count(&self) -> usize {
        self.block_count
    }

    /// The socket, for its options.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The status word of block `index` (`tpacket_block_desc.hdr.bh1.block_status`, 8 bytes
    /// into the block), which the kernel and this process hand the block over with.
    fn block_status(&self, index: usize) -> &AtomicU32 {
        debug_assert!(index < self.block_count);
        // SAFETY: `index < block_count`, so the word lies inside the mapping, which lives as
        // long as `self`; blocks start at page boundaries, so it is 4-byte aligned. The
        // kernel reads and writes this word concurrently, which is what an atomic is for, and
        // nothing in this process accesses it other than through atomics.
        unsafe {
            AtomicU32::from_ptr(
                self.map
                    .as_ptr()
                    .add(index * self.block_bytes + BLOCK_STATUS_OFFSET)
                    .cast::<u32>(),
            )
        }
    }

    /// The next block, in ring order, once the kernel has handed it over: waits up to
    /// `timeout` in `poll(2)` if it has not yet. `None` when it did not come in time (or a
    /// signal interrupted the wait).
    pub fn next_block(&mut self, timeout: Duration) -> io::Result<Option<Block<'_>>> {
        let index = self.next_block;
        if self.block_status(index).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            let mut pollfd = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            let timeout_ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: `pollfd` is one valid `struct pollfd`, writable, and lives across the
            // call.
            let result = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
            if result < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                return Err(error);
            }
            // Acquire: what the kernel wrote into the block before it set the status is
            // visible to the reads of the block that follow.
            if self.block_status(index).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                // An error (the interface went away: ENETDOWN) wakes poll at once until it
                // is read; reading it clears it.
                if pollfd.revents & libc::POLLERR != 0 {
                    return Err(take_error(self.fd())?.unwrap_or_else(|| {
                        io::Error::other("poll reported an error the socket does not hold")
                    }));
                }
                return Ok(None);
            }
        }
        Ok(Some(Block { ring: self, index }))
    }

    /// The kernel's counters since the last call (`PACKET_STATISTICS`, `tpacket_stats_v3`).
    pub fn statistics(&self) -> io::Result<RingStatistics> {
        let mut stats = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `stats` and `len` are valid for writes of the sizes given, and live across
        // the call; getsockopt(2) writes at most `len` bytes.
        let result = unsafe {
            libc::getsockopt(
                self.fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats_v3).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RingStatistics {
            packets: u64::from(stats.tp_packets),
            drops: u64::from(stats.tp_drops),
            freezes: u64::from(stats.tp_freeze_q_cnt),
        })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `map` and `map_bytes` are the mapping `open` created, unmapped only here;
        // no `Block` outlives the ring (they borrow it).
        unsafe {
            libc::munmap(self.map.as_ptr().cast::<libc::c_void>(), self.map_bytes);
        }
    }
}

/// `offsetof(struct tpacket_block_desc, hdr.bh1.block_status)`.
const BLOCK_STATUS_OFFSET: usize = 8;

/// A block the kernel has handed over: its bytes are this process's to read until the
/// block is dropped, which hands it back to the kernel and moves the ring on.
#[derive(Debug)]
pub struct Block<'ring> {
    ring: &'ring mut Ring,
    index: usize,
}

impl Block<'_> {
    /// The whole block: its descriptor (`tpacket_block_desc`), then its frames.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the range is block `index` of the live mapping. Its status is
        // TP_STATUS_USER (checked with Acquire in `next_block`), so the kernel writes
        // nothing in it until `drop` hands it back, and `drop` cannot run while the slice
        // borrows `self`.
        unsafe {
            std::slice::from_raw_parts(
                self.ring
                    .map
                    .as_ptr()
                    .add(self.index * self.ring.block_bytes)
                    .cast_const(),
                self.ring.block_bytes,
            )
        }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        // Release: every read of the block above happens before the kernel may refill it.
        self.ring
            .block_status(self.index)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.ring.next_block = (self.index + 1) % self.ring.block_count;
    }
}
