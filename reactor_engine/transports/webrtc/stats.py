"""What the transport's stats route shows of libwebrtc's own statistics of a peer connection."""

from __future__ import annotations

from typing import Any

import reactor_webrtc as rtc

__all__ = ["outbound_stats"]


def outbound_stats(report: rtc.StatsReport) -> dict[str, Any]:
    """The outbound video and audio, the inbound streams (``frames_decoded`` counts libwebrtc's decodes of
    the stand-in frames, see ``tracks.py``) and the selected candidate pair of a ``get_stats()`` report."""
    out: dict[str, Any] = {}
    for rtp in report.outbound_rtp:
        if rtp.kind == rtc.StreamKind.Video:
            packets = max(1, rtp.packets_sent)
            out["video"] = {
                "codec": rtp.codec_mime_type,
                "target_bitrate_bps": rtp.target_bitrate_bps,
                "frames_sent": rtp.frames_sent,
                "bytes_sent": rtp.bytes_sent,
                "packets_sent": rtp.packets_sent,
                "retransmitted_packets": rtp.retransmitted_packets_sent,
                "nack_count": rtp.nack_count,
                "pli_count": rtp.pli_count,
                "fir_count": rtp.fir_count,
                "round_trip_time_ms": round(rtp.round_trip_time_s * 1000, 2),
                "packet_send_delay_ms": round(rtp.total_packet_send_delay_s * 1000 / packets, 3),
                "fraction_lost": rtp.fraction_lost,
            }
        elif rtp.kind == rtc.StreamKind.Audio:
            out.setdefault("audio", []).append(
                {"mid": rtp.mid, "codec": rtp.codec_mime_type, "packets_sent": rtp.packets_sent}
            )
    for inbound in report.inbound_rtp:  # the client's camera and microphone
        out.setdefault("inbound", []).append(
            {
                "mid": inbound.mid,
                "kind": str(inbound.kind).rsplit(".", 1)[-1].lower(),
                "codec": inbound.codec_mime_type,
                "packets_received": inbound.packets_received,
                "packets_lost": inbound.packets_lost,
                "pli_count": inbound.pli_count,
                "frames_decoded": inbound.frames_decoded,
            }
        )
    for pair in report.candidate_pairs:
        if pair.nominated:
            out["candidate_pair"] = {
                "local_type": str(pair.local_candidate_type).rsplit(".", 1)[-1].lower(),
                "round_trip_time_ms": round(pair.current_round_trip_time_s * 1000, 2),
                "available_outgoing_bitrate_bps": pair.available_outgoing_bitrate_bps,
            }
    return out
