"""A whole podium scenario driven from another gRPC stack: Python's grpcio, with stubs generated
from proto/podium/v1/*.proto when the test runs, against a real podiumd.

An organiser sets up a conference (rooms, a remote speaker, a session live now, the speaker's
pre-recorded talk); attendees join with the join code, vote in a live poll and watch the tally
stream; an integration token reads the public event feed; and the speaker's agent, written here
in Python, holds the presence stream, drops its connection, and the status stream shows the
recording on air from where the talk had got to."""

import hashlib
import queue
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from conftest import PATIENCE_SECONDS

CONFERENCE = "odc2024"
# Heartbeat silence (and stream-closed grace) before the session falls back to its recording.
# Short, so that the test takes seconds; the server asks for a heartbeat every quarter of it.
FAILOVER_AFTER_MS = 400


def bearer(token: str):
    """The metadata every podium RPC but Access/Join needs."""
    return (("authorization", f"Bearer {token}"),)


def request_id() -> str:
    return str(uuid.uuid4())


def forty_minute_talk() -> bytes:
    """A real 40-minute MP4 (H.264 and AAC) made by ffmpeg: one small frame every ten seconds
    over silence, about 160 KB."""
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/talk.mp4"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", "color=c=navy:s=64x36:r=1/10",
             "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
             "-t", "2400", "-c:v", "libx264", "-c:a", "aac", "-b:a", "8k", out],
            check=True,
        )
        with open(out, "rb") as f:
            return f.read()


@contextmanager
def step(name: str):
    """Names the scenario step in any gRPC failure, with podiumd's status code and message."""
    try:
        yield
    except grpc.RpcError as error:
        raise AssertionError(
            f"{name}: podiumd answered {error.code().name}: {error.details()}"
        ) from None


class _End:
    def __init__(self, error):
        self.error = error


class Follower:
    """Reads a server stream on a thread, so the test can wait for a message with a time limit."""

    def __init__(self, call, what: str):
        self.call = call
        self.what = what
        self.messages = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for message in self.call:
                self.messages.put(message)
            self.messages.put(_End(None))
        except grpc.RpcError as error:
            self.messages.put(_End(error))

    def until(self, predicate, expectation: str):
        """The first message for which `predicate` returns something other than None; that
        return value."""
        deadline = time.monotonic() + PATIENCE_SECONDS
        seen = []
        while True:
            try:
                message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                last = seen[-1] if seen else "nothing"
                raise AssertionError(
                    f"{self.what}: no {expectation} within {PATIENCE_SECONDS} s "
                    f"({len(seen)} messages; the last: {last})"
                ) from None
            if isinstance(message, _End):
                how = (
                    f"{message.error.code().name}: {message.error.details()}"
                    if message.error
                    else "the server closed it"
                )
                raise AssertionError(f"{self.what} ended ({how}) before {expectation}")
            seen.append(message)
            found = predicate(message)
            if found is not None:
                return found

    def close(self):
        self.call.cancel()
        self.thread.join(timeout=PATIENCE_SECONDS)


class SpeakerAgent:
    """The remote speaker's agent: holds Presence/Link open on its own connection, says hello,
    then sends a heartbeat at the interval the server's welcome asks for, with the round trip it
    measured from the server's acknowledgements, as `podium speaker connect` does."""

    def __init__(self, pb, addr: str, token: str, session_id: str):
        self.pb = pb
        self.session_id = session_id
        self.channel = grpc.insecure_channel(addr)
        self.stopped = threading.Event()
        self.welcomed = threading.Event()
        self.welcome = None
        self.acks = 0
        self.round_trip_ms = 0
        self.sent = {}
        self.failure = None
        self.call = pb.PresenceStub(self.channel).Link(self._requests(), metadata=bearer(token))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _requests(self):
        pb = self.pb
        yield pb.LinkRequest(
            hello=pb.AgentHello(session_id=self.session_id, agent="podium python scenario test")
        )
        if not self.welcomed.wait(PATIENCE_SECONDS):
            return
        interval = self.welcome.heartbeat_interval_ms / 1000
        seq = 0
        while not self.stopped.wait(interval):
            seq += 1
            self.sent[seq] = time.monotonic()
            figures = pb.LinkFigures(round_trip_ms=self.round_trip_ms)
            yield pb.LinkRequest(heartbeat=pb.Heartbeat(seq=seq, figures=figures))

    def _read(self):
        try:
            for response in self.call:
                kind = response.WhichOneof("message")
                if kind == "welcome":
                    self.welcome = response.welcome
                    self.welcomed.set()
                elif kind == "ack":
                    sent = self.sent.pop(response.ack.seq, None)
                    if sent is not None:
                        self.round_trip_ms = int((time.monotonic() - sent) * 1000)
                    self.acks += 1
        except grpc.RpcError as error:
            self.failure = error

    def wait_welcome(self):
        if not self.welcomed.wait(PATIENCE_SECONDS):
            why = (
                f"{self.failure.code().name}: {self.failure.details()}"
                if self.failure
                else "no answer"
            )
            raise AssertionError(f"Presence.Link: no welcome from podiumd ({why})")
        return self.welcome

    def drop(self):
        """The speaker's link dies: the connection closes with no goodbye."""
        self.stopped.set()
        self.channel.close()
        self.reader.join(timeout=PATIENCE_SECONDS)


def status_of(session_id: str):
    """A predicate on WatchStatus messages: the session's status, if the message holds it."""

    def find(message):
        if message.WhichOneof("update") == "snapshot":
            sessions = message.snapshot.sessions
        else:
            sessions = [message.changed]
        return next((s for s in sessions if s.session_id == session_id), None)

    return find


def status_where(session_id, condition):
    find = status_of(session_id)

    def match(message):
        status = find(message)
        return status if status is not None and condition(status) else None

    return match


def link_state(status, speaker_id):
    return next((link.state for link in status.links if link.speaker_id == speaker_id), None)


def millis(timestamp) -> int:
    return timestamp.seconds * 1000 + timestamp.nanos // 1_000_000


def decode(pb, event):
    """An event's payload as the message its `type` names ("podium.v1.RoomAdded")."""
    message = getattr(pb, event.type.removeprefix("podium.v1."))()
    message.ParseFromString(event.payload)
    return message


def test_a_conference_from_setup_to_failover_through_python_grpc(pb, podiumd):
    channel = grpc.insecure_channel(podiumd.addr)
    access = pb.AccessStub(channel)
    agenda = pb.AgendaStub(channel)
    recordings = pb.RecordingsStub(channel)
    stage = pb.StageStub(channel)
    polls = pb.PollsStub(channel)
    feed = pb.EventFeedStub(channel)
    admin = bearer(podiumd.admin_token())
    followers = []
    agent = None
    try:
        # ---- The organiser sets up the conference. ----
        with step("admin creates the conference and an organiser token"):
            title = pb.LocalizedText(
                text={"en": "Open Data Conference 2024", "km": "សន្និសីទទិន្នន័យបើកចំហ ២០២៤"}
            )
            created = agenda.CreateConference(
                pb.CreateConferenceRequest(
                    request_id=request_id(),
                    conference_id=CONFERENCE,
                    title=title,
                    default_language="en",
                    time_zone="Asia/Phnom_Penh",
                ),
                metadata=admin,
            ).conference
            assert created.id == CONFERENCE
            organiser_token = access.IssueToken(
                pb.IssueTokenRequest(
                    role=pb.ROLE_ORGANISER, conference_id=CONFERENCE, name="Sophea, programme"
                ),
                metadata=admin,
            ).token
        organiser = bearer(organiser_token)

        with step("the organiser's token says who it is"):
            me = access.WhoAmI(pb.WhoAmIRequest(), metadata=organiser).principal
            assert (me.role, me.conference_id, me.name) == (
                pb.ROLE_ORGANISER,
                CONFERENCE,
                "Sophea, programme",
            ), me

        with step("the organiser adds rooms and a remote speaker"):
            hall = agenda.AddRoom(
                pb.AddRoomRequest(
                    request_id=request_id(),
                    conference_id=CONFERENCE,
                    name="Main hall",
                    capacity=300,
                ),
                metadata=organiser,
            ).room
            agenda.AddRoom(
                pb.AddRoomRequest(
                    request_id=request_id(), conference_id=CONFERENCE, name="Breakout room B"
                ),
                metadata=organiser,
            )
            speaker = agenda.AddSpeaker(
                pb.AddSpeakerRequest(
                    request_id=request_id(),
                    conference_id=CONFERENCE,
                    name="Seo Min-jun",
                    organisation="National Information Society Agency (NIA)",
                    time_zone="Asia/Seoul",
                ),
                metadata=organiser,
            ).speaker
            assert speaker.time_zone == "Asia/Seoul", speaker

        with step("the organiser schedules a session running now"):
            now = int(time.time())
            session = agenda.AddSession(
                pb.AddSessionRequest(
                    request_id=request_id(),
                    conference_id=CONFERENCE,
                    title=pb.LocalizedText(
                        text={"en": "Overview of the open data landscape in the region"}
                    ),
                    kind=pb.SESSION_KIND_TALK,
                    start=Timestamp(seconds=now - 5 * 60),
                    end=Timestamp(seconds=now + 40 * 60),
                    room_id=hall.id,
                    speaker_ids=[speaker.id],
                    failover=pb.FailoverPolicy(
                        failover_after_ms=FAILOVER_AFTER_MS, failback=pb.FAILBACK_MODE_STICKY
                    ),
                ),
                metadata=organiser,
            ).session
            assert session.room_name == "Main hall", session
            assert [s.speaker_id for s in session.speakers] == [speaker.id], session
            # Every time shown to the speaker is in their own zone, labelled.
            assert session.speakers[0].start.time_zone == "Asia/Seoul", session
            assert session.failover.failover_after_ms == FAILOVER_AFTER_MS, session

        with step("the organiser gives the session ten more minutes"):
            # UpdateSession replaces every fact: the session's own, with a later end, made to
            # the revision read, so that another organiser's change meanwhile is not overwritten.
            def longer(read, minutes):
                return pb.UpdateSessionRequest(
                    request_id=request_id(),
                    conference_id=CONFERENCE,
                    session_id=read.id,
                    title=read.title,
                    kind=read.kind,
                    start=read.start.utc,
                    end=Timestamp(seconds=read.end.utc.seconds + minutes * 60),
                    room_id=read.room_id,
                    speaker_ids=[s.speaker_id for s in read.speakers if not s.backup],
                    backup_speaker_ids=[s.speaker_id for s in read.speakers if s.backup],
                    failover=read.failover,
                    expected_revision=read.revision,
                )

            read = session
            assert read.revision == 0, read
            session = agenda.UpdateSession(longer(read, 10), metadata=organiser).session
            assert session.revision == 1, session
            assert session.end.utc.seconds == now + 50 * 60, session
            assert [s.speaker_id for s in session.speakers] == [speaker.id], session
            assert session.failover.failover_after_ms == FAILOVER_AFTER_MS, session
            # A second change made to the session as first read is refused, and changes nothing.
            try:
                agenda.UpdateSession(longer(read, 20), metadata=organiser)
                raise AssertionError("a change to an old revision overwrote the newer one")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.ABORTED, error
                assert "changed since revision 0" in error.details(), error
            again = agenda.GetSession(
                pb.GetSessionRequest(conference_id=CONFERENCE, session_id=session.id),
                metadata=organiser,
            ).session
            assert (again.revision, again.end.utc.seconds) == (1, now + 50 * 60), again

        with step("the organiser uploads the speaker's pre-recorded talk"):
            video = forty_minute_talk()
            header = pb.RecordingHeader(
                request_id=request_id(),
                conference_id=CONFERENCE,
                session_id=session.id,
                sha256=hashlib.sha256(video).hexdigest(),
                size_bytes=len(video),
                media_type="video/mp4",
                language="ko",
                captions=[pb.CaptionTrack(language="km", label="Khmer (subtitles)")],
                file_name="overview.mp4",
            )
            chunks = [video[i : i + 32 * 1024] for i in range(0, len(video), 32 * 1024)]
            parts = [pb.UploadRecordingRequest(header=header)] + [
                pb.UploadRecordingRequest(chunk=chunk) for chunk in chunks
            ]
            recording = recordings.UploadRecording(iter(parts), metadata=organiser).recording
            assert recording.sha256 == hashlib.sha256(video).hexdigest(), recording
            assert (recording.size_bytes, recording.order) == (len(video), 0), recording
            # podiumd read the talk's length and codecs from the file.
            assert recording.duration_ms // 1000 == 40 * 60, recording
            assert (recording.media.container, recording.media.video_codec) == ("mp4", "h264")
            listed = recordings.ListRecordings(
                pb.ListRecordingsRequest(conference_id=CONFERENCE, session_id=session.id),
                metadata=organiser,
            ).recordings
            assert [r.id for r in listed] == [recording.id], listed

        with step("the organiser issues the speaker's and the OBS bridge's tokens"):
            speaker_token = access.IssueToken(
                pb.IssueTokenRequest(
                    role=pb.ROLE_SPEAKER,
                    conference_id=CONFERENCE,
                    speaker_id=speaker.id,
                    name="Min-jun's laptop in Seoul",
                ),
                metadata=organiser,
            ).token
            bridge = bearer(
                access.IssueToken(
                    pb.IssueTokenRequest(
                        role=pb.ROLE_INTEGRATION, conference_id=CONFERENCE, name="OBS bridge"
                    ),
                    metadata=organiser,
                ).token
            )

        # ---- The speaker's agent connects and the session goes live on the speaker. ----
        with step("the organiser watches the conference's status"):
            statuses = Follower(
                stage.WatchStatus(
                    pb.WatchStatusRequest(conference_id=CONFERENCE), metadata=organiser
                ),
                "Stage.WatchStatus",
            )
            followers.append(statuses)
            first = statuses.until(status_of(session.id), "snapshot holding the session")
            assert first.state == pb.SESSION_STATE_SCHEDULED, first

        with step("the speaker's agent connects over Presence/Link"):
            agent = SpeakerAgent(pb, podiumd.addr, speaker_token, session.id)
            welcome = agent.wait_welcome()
            assert (welcome.session_id, welcome.speaker_id) == (session.id, speaker.id), welcome
            assert welcome.failover_after_ms == FAILOVER_AFTER_MS, welcome
            assert 0 < welcome.heartbeat_interval_ms < FAILOVER_AFTER_MS, welcome
            statuses.until(
                status_where(
                    session.id,
                    lambda s: link_state(s, speaker.id) == pb.LINK_STATE_HEALTHY,
                ),
                f"status with {speaker.id}'s link healthy",
            )

        with step("the organiser takes the session live"):
            start = pb.StartSessionRequest(
                request_id=request_id(), conference_id=CONFERENCE, session_id=session.id
            )
            live = stage.StartSession(start, metadata=organiser).status
            assert live.state == pb.SESSION_STATE_LIVE, live
            assert live.source.kind == pb.SOURCE_KIND_SPEAKER, live
            assert live.source.speaker_id == speaker.id, live

        with step("the start, sent again with its request id, is answered, not refused"):
            again = stage.StartSession(start, metadata=organiser).status
            assert again.state == pb.SESSION_STATE_LIVE, again
            assert again.source.since == live.source.since, (again, live)
            try:
                stage.StartSession(
                    pb.StartSessionRequest(
                        request_id=request_id(), conference_id=CONFERENCE, session_id=session.id
                    ),
                    metadata=organiser,
                )
                raise AssertionError("a new start of a live session was carried out")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
            statuses.until(
                status_where(
                    session.id,
                    lambda s: (
                        s.state == pb.SESSION_STATE_LIVE and s.source.kind == pb.SOURCE_KIND_SPEAKER
                    ),
                ),
                "status with the speaker live on air",
            )

        # ---- Attendees join, vote and watch the tally. ----
        with step("the organiser opens a poll for the session"):
            join_code = agenda.GetConference(
                pb.GetConferenceRequest(conference_id=CONFERENCE), metadata=organiser
            ).conference.join_code
            assert join_code, "the organiser sees the conference's join code"
            poll = polls.CreatePoll(
                pb.CreatePollRequest(
                    request_id=request_id(),
                    conference_id=CONFERENCE,
                    session_id=session.id,
                    question=pb.LocalizedText(
                        text={
                            "en": "Which data do you use most?",
                            "km": "ទិន្នន័យណាដែលអ្នកប្រើច្រើនជាងគេ?",
                        }
                    ),
                    kind=pb.POLL_KIND_SINGLE_CHOICE,
                    options=[
                        pb.LocalizedText(text={"en": "Census"}),
                        pb.LocalizedText(text={"en": "Climate"}),
                        pb.LocalizedText(text={"en": "Budgets"}),
                    ],
                    visibility=pb.RESULT_VISIBILITY_LIVE,
                ),
                metadata=organiser,
            ).poll
            assert [o.id for o in poll.options] == ["opt-1", "opt-2", "opt-3"], poll
            opened = polls.OpenPoll(
                pb.OpenPollRequest(conference_id=CONFERENCE, poll_id=poll.id), metadata=organiser
            ).poll
            assert opened.state == pb.POLL_STATE_OPEN, opened

        with step("attendees join with the join code"):
            # Join needs no token: the code is the credential. Case and dashes do not matter.
            joined = access.Join(
                pb.JoinRequest(join_code=join_code.lower(), display_name="Chantha")
            )
            assert joined.principal.role == pb.ROLE_ATTENDEE, joined.principal
            assert joined.principal.conference_id == CONFERENCE, joined.principal
            chantha = bearer(joined.token)
            dara = bearer(
                access.Join(pb.JoinRequest(join_code=join_code, display_name="Dara")).token
            )
            seen_by_attendee = polls.GetPoll(
                pb.GetPollRequest(conference_id=CONFERENCE, poll_id=poll.id, language="km"),
                metadata=chantha,
            ).poll
            assert seen_by_attendee.label == "ទិន្នន័យណាដែលអ្នកប្រើច្រើនជាងគេ?", seen_by_attendee

        with step("an attendee watches the poll's results"):
            results = Follower(
                polls.WatchResults(
                    pb.WatchResultsRequest(conference_id=CONFERENCE, poll_id=poll.id),
                    metadata=chantha,
                ),
                "Polls.WatchResults",
            )
            followers.append(results)
            snapshot = results.until(lambda m: m if m.HasField("results") else None, "snapshot")
            assert snapshot.results.ballots == 0, snapshot

        def cast(who, option_id):
            return polls.CastBallot(
                pb.CastBallotRequest(
                    conference_id=CONFERENCE,
                    poll_id=poll.id,
                    ballot_id=request_id(),
                    option_ids=[option_id],
                ),
                metadata=who,
            )

        with step("attendees vote; one changes their mind"):
            assert not cast(chantha, "opt-1").replaced
            assert not cast(dara, "opt-2").replaced
            changed = cast(chantha, "opt-2")
            assert changed.replaced, "a second ballot replaces the attendee's first"

        with step("the results stream shows the tally"):

            def tally(message):
                counts = {o.option_id: o.count for o in message.results.options}
                return counts if message.results.ballots == 2 and counts["opt-2"] == 2 else None

            counts = results.until(tally, "results with both ballots, both for opt-2")
            assert counts == {"opt-1": 0, "opt-2": 2, "opt-3": 0}, counts

        # ---- The public event feed. ----
        with step("an attendee may not read the event feed"):
            try:
                next(
                    iter(
                        feed.Subscribe(
                            pb.SubscribeRequest(conference_id=CONFERENCE), metadata=chantha
                        )
                    )
                )
                raise AssertionError("EventFeed/Subscribe accepted an attendee token")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
                assert "attendee" in error.details(), error.details()

        with step("the OBS bridge reads the public event feed"):
            events = Follower(
                feed.Subscribe(pb.SubscribeRequest(conference_id=CONFERENCE), metadata=bridge),
                "EventFeed.Subscribe",
            )
            followers.append(events)
            stored = []

            def caught_up(message):
                if message.WhichOneof("item") == "event":
                    stored.append(message.event)
                    return None
                return message.caught_up

            seam = events.until(caught_up, "caught_up marker")
            positions = [e.position for e in stored]
            assert positions == sorted(set(positions)), positions
            assert seam.position > positions[-1], (seam, positions[-1])
            assert all(e.stream.startswith(f"conference/{CONFERENCE}/") for e in stored)
            types = [e.type for e in stored]
            for expected in [
                "podium.v1.ConferenceCreated",
                "podium.v1.SessionScheduled",
                "podium.v1.RecordingRegistered",
                "podium.v1.SessionWentLive",
                "podium.v1.PollCreated",
                "podium.v1.PollOpened",
            ]:
                assert expected in types, f"{expected} not in the feed: {types}"
            # What one attendee chose is never in the public feed.
            assert "podium.v1.BallotCast" not in types, types
            rooms = [decode(pb, e).name for e in stored if e.type == "podium.v1.RoomAdded"]
            assert rooms == ["Main hall", "Breakout room B"], rooms
            scheduled = next(
                decode(pb, e) for e in stored if e.type == "podium.v1.SessionScheduled"
            )
            assert scheduled.session_id == session.id, scheduled
            assert scheduled.failover.failover_after_ms == FAILOVER_AFTER_MS, scheduled

        # ---- The speaker's link drops: the recording goes on air. ----
        with step("the speaker's link drops and the session fails over to the recording"):
            assert agent.acks > 0, "podiumd acknowledged the agent's heartbeats"
            agent.drop()
            fallen = statuses.until(
                status_where(session.id, lambda s: s.source.kind == pb.SOURCE_KIND_RECORDING),
                "status with the recording on air",
            )
            assert fallen.state == pb.SESSION_STATE_LIVE, fallen
            assert fallen.cause == pb.CAUSE_STREAM_CLOSED, fallen
            assert fallen.source.recording_id == recording.id, fallen
            assert fallen.source.recording_sha256 == recording.sha256, fallen
            # The recording starts where the live talk had got to.
            went_live = millis(fallen.went_live_at)
            assert fallen.source.offset_ms == millis(fallen.source.since) - went_live, fallen
            # A watcher gets each session's newest status: the alert may come with the
            # fallback itself, or in a later update.
            def failover_alert(s):
                return any(a.kind == pb.ALERT_KIND_FAILOVER for a in s.alerts)

            alerted = (
                fallen
                if failover_alert(fallen)
                else statuses.until(
                    status_where(session.id, failover_alert),
                    "status with a failover alert",
                )
            )
            assert link_state(alerted, speaker.id) in (
                pb.LINK_STATE_OFFLINE,
                pb.LINK_STATE_LOST,
            ), alerted

        with step("the OBS bridge sees the switch to the recording on the feed"):

            def switched(message):
                if message.WhichOneof("item") != "event":
                    return None
                if message.event.type != "podium.v1.SourceSwitched":
                    return None
                return decode(pb, message.event)

            switch = events.until(switched, "SourceSwitched event")
            assert switch.session_id == session.id, switch
            assert switch.cause == pb.CAUSE_STREAM_CLOSED, switch
            assert switch.to.kind == pb.SOURCE_KIND_RECORDING, switch
            assert getattr(switch, "from").kind == pb.SOURCE_KIND_SPEAKER, switch
    finally:
        if agent is not None:
            agent.drop()
        for follower in followers:
            follower.close()
        channel.close()
