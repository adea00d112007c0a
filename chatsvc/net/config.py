"""
Settings of the network layer, shared by every stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatsvc.protocol import DEFAULT_MAX_PACKET_SIZE, HEADER_SIZE, MAX_WIRE_PACKET_SIZE


@dataclass(frozen=True, slots=True)
class NetConfig:
    """
    Limits applied to every connection of a listening stage.

    @ivar max_connections: connections above this number are closed at once.
    @ivar max_packet_size: the largest packet (header included) a peer may send.
    @ivar send_queue_limit: bytes a connection may have queued while its
        transport's buffer is full (the peer is not reading) before it is cut
        off as a slow consumer (the echo stage stops reading instead).
    @ivar max_connections_per_ip: connections one client address may have
        open (IPv6: one /64 network); 0 turns the cap off.
    @ivar idle_timeout: seconds without a complete packet (raw bytes for the
        echo stage) before a connection is closed; 0 turns the timeout off.
    @ivar socket_send_buffer: the kernel send buffer (C{SO_SNDBUF}) of every
        accepted socket, in bytes; 0 leaves the kernel's default (on Linux,
        autotuned up to C{net.ipv4.tcp_wmem}'s maximum).
    @ivar batch_size: packets one connection may have processed per reactor turn.
    @ivar input_buffer_limit: received, unprocessed bytes above which reading
        from that connection pauses.
    """

    max_connections: int = 10_000
    max_connections_per_ip: int = 64
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    send_queue_limit: int = 256 * 1024
    idle_timeout: float = 0.0
    socket_send_buffer: int = 64 * 1024
    batch_size: int = 32
    input_buffer_limit: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_connections_per_ip < 0:
            raise ValueError("max_connections_per_ip must be 0 (off) or positive")
        if not HEADER_SIZE <= self.max_packet_size <= MAX_WIRE_PACKET_SIZE:
            raise ValueError(
                f"max_packet_size must be {HEADER_SIZE}..{MAX_WIRE_PACKET_SIZE}"
            )
        if self.send_queue_limit < self.max_packet_size:
            raise ValueError("send_queue_limit must hold at least one packet")
        if self.idle_timeout < 0:
            raise ValueError("idle_timeout must be 0 (off) or positive")
        if self.socket_send_buffer < 0:
            raise ValueError("socket_send_buffer must be 0 (default) or positive")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.input_buffer_limit < self.max_packet_size:
            raise ValueError("input_buffer_limit must hold at least one packet")
