from chatsvc.protocol.framing import Packet

def split_packets(
    buffer: bytes | bytearray,
    offset: int,
    limit: int,
    maximum: int,
    packet_type: type[Packet],
    /,
) -> tuple[list[Packet], int, int]: ...
