"""LiveKit's Egress service: recording a call's room, audio only, to a file or an S3 bucket.

`start_recording` asks for a room composite egress with `audio_only` and one Ogg file output:
`RECORDING_FILE_DIR/<session id>.ogg` as the egress sees it, or, when RECORDING_S3_BUCKET is set,
the object `recordings/<session id>.ogg` in that bucket. `stop_recording` stops it. Neither
raises for a refused or failed egress (a Twirp error, a network error, a timeout of a few
seconds, a bug): each returns the small result objects of `backend/calls/recording.py`, so a
call goes on without its recording. `stop_room_recordings` stops every active egress of a room
(after a start that may have gone through although it failed).

Secrets (the S3 keys, the API secret) are sent to LiveKit and never logged.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError
from livekit.protocol import egress as egress_proto

from backend.calls.recording import RecordingStart, RecordingStop, file_name
from backend.settings import Settings

log = logging.getLogger(__name__)

# Seconds LiveKit may take to accept a start or a stop. Under 5 s the API client makes one
# attempt (no region failover, which could start a second egress).
START_TIMEOUT_SECONDS = 4.0
STOP_TIMEOUT_SECONDS = 4.0
S3_PREFIX = "recordings/"
FAILED_STATUSES = (egress_proto.EGRESS_FAILED, egress_proto.EGRESS_ABORTED)


def configured(settings: Settings) -> str | None:
    """None when recording can be asked for with these settings, else why not (one sentence)."""
    if not (settings.livekit_url and settings.livekit_api_key and settings.livekit_api_secret):
        return "LiveKit is not configured (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)."
    if not (settings.recording_s3_bucket or settings.recording_file_dir):
        return "Neither RECORDING_FILE_DIR nor RECORDING_S3_BUCKET is set."
    return None


def file_output(settings: Settings, session_id: str) -> tuple[egress_proto.EncodedFileOutput, str]:
    """The egress's file output for a session, and its location as the session shows it."""
    name = file_name(session_id)
    if settings.recording_s3_bucket:
        key = S3_PREFIX + name
        s3 = egress_proto.S3Upload(
            bucket=settings.recording_s3_bucket,
            region=settings.recording_s3_region or "",
            endpoint=settings.recording_s3_endpoint or "",
            access_key=settings.recording_s3_access_key or "",
            secret=settings.recording_s3_secret or "",
            force_path_style=bool(settings.recording_s3_endpoint),  # S3-compatible servers (MinIO)
        )
        output = egress_proto.EncodedFileOutput(file_type=egress_proto.OGG, filepath=key, s3=s3)
        return output, f"s3://{settings.recording_s3_bucket}/{key}"
    path = f"{settings.recording_file_dir.rstrip('/')}/{name}"
    return egress_proto.EncodedFileOutput(file_type=egress_proto.OGG, filepath=path), path


def _client(settings: Settings, seconds: float) -> api.LiveKitAPI:
    return api.LiveKitAPI(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret,
        timeout=aiohttp.ClientTimeout(total=seconds),
        failover=False,
    )


def _explain(exc: BaseException) -> tuple[str, bool]:
    """(one sentence, whether the request may have gone through anyway)."""
    if isinstance(exc, ServerError):
        return f"LiveKit Egress refused it ({exc.code}: {exc.message}).", exc.status >= 500
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"LiveKit Egress could not be reached ({type(exc).__name__}).", False
    if isinstance(exc, TimeoutError):
        return "LiveKit Egress did not answer in time.", True
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"LiveKit Egress could not be reached ({type(exc).__name__}).", True
    return f"Unexpected error ({type(exc).__name__}).", True


async def start_recording(settings: Settings, room_name: str, session_id: str) -> RecordingStart:
    """Start recording `room_name` (audio only) for `session_id`; never raises (see the module doc)."""
    problem = configured(settings)
    if problem:
        log.warning("session %s not recorded: %s", session_id, problem)
        return RecordingStart(ok=False, error=problem)
    output, location = file_output(settings, session_id)
    request = egress_proto.RoomCompositeEgressRequest(room_name=room_name, audio_only=True, file_outputs=[output])
    try:
        async with _client(settings, START_TIMEOUT_SECONDS) as lkapi:
            info = await asyncio.wait_for(
                lkapi.egress.start_room_composite_egress(request), START_TIMEOUT_SECONDS + 0.5
            )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a recording must never break the call
        error, uncertain = _explain(exc)
        if error.startswith("Unexpected"):
            log.exception("session %s not recorded", session_id)
        else:
            log.warning("session %s not recorded: %s", session_id, error)
        return RecordingStart(ok=False, location=location, error=error, uncertain=uncertain)
    if not info.egress_id or info.status in FAILED_STATUSES or info.error:
        error = f"LiveKit Egress did not start it ({info.error or 'no egress id'})."
        log.warning("session %s not recorded: %s", session_id, error)
        return RecordingStart(ok=False, egress_id=info.egress_id or None, location=location, error=error)
    log.info("session %s: recording started (egress %s)", session_id, info.egress_id)
    return RecordingStart(ok=True, egress_id=info.egress_id, location=location)


def _file_location(info: egress_proto.EgressInfo) -> str | None:
    for result in info.file_results:
        if result.location or result.filename:
            return result.location or result.filename
    if info.HasField("file") and (info.file.location or info.file.filename):
        return info.file.location or info.file.filename
    return None


async def stop_recording(settings: Settings, egress_id: str) -> RecordingStop:
    """Stop egress `egress_id`; never raises. A stop LiveKit refuses (the egress already ended
    with its room, say) is `ok=False` with the reason; the file may still be complete."""
    try:
        async with _client(settings, STOP_TIMEOUT_SECONDS) as lkapi:
            info = await asyncio.wait_for(
                lkapi.egress.stop_egress(api.StopEgressRequest(egress_id=egress_id)), STOP_TIMEOUT_SECONDS + 0.5
            )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error, _ = _explain(exc)
        log.warning("recording %s: the stop failed: %s", egress_id, error)
        note = f"Stopping it failed: {error} LiveKit ends the recording when the call's room closes."
        return RecordingStop(ok=False, egress_id=egress_id, error=note)
    if info.status in FAILED_STATUSES:
        error = f"LiveKit Egress reports the recording failed ({info.error or 'no reason given'})."
        log.warning("recording %s: %s", egress_id, error)
        return RecordingStop(ok=True, egress_id=egress_id, location=_file_location(info), error=error, failed=True)
    log.info("recording %s stopped", egress_id)
    return RecordingStop(ok=True, egress_id=egress_id, location=_file_location(info))


async def stop_room_recordings(settings: Settings, room_name: str) -> list[str]:
    """Stop every active egress of `room_name`; the ids stopped. Never raises."""
    stopped: list[str] = []
    try:
        async with _client(settings, STOP_TIMEOUT_SECONDS) as lkapi:
            listed = await lkapi.egress.list_egress(api.ListEgressRequest(room_name=room_name, active=True))
            for info in listed.items:
                await lkapi.egress.stop_egress(api.StopEgressRequest(egress_id=info.egress_id))
                stopped.append(info.egress_id)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("could not check the call's room for recordings to stop: %s", _explain(exc)[0])
    return stopped
