package fare

import (
	"strings"
	"time"
)

// NATS subjects and stream names shared by terminals and clearing.
//
// Events go to faregate.events.<operator>.<terminal>: a clearing instance can
// own a partition of the city by filtering on operators (or, later, on a
// terminal-hash token) without terminals changing what they publish.
const (
	// EventStream is the JetStream stream holding signed fare events.
	EventStream = "FAREGATE_EVENTS"
	// EventSubjects is the stream's subject filter.
	EventSubjects = "faregate.events.>"
	// QuarantineStream holds rejected messages with their reasons.
	QuarantineStream = "FAREGATE_QUARANTINE"
	// QuarantineSubject is where clearing publishes rejected messages.
	QuarantineSubject = "faregate.quarantine"
	// HeaderReason carries the quarantine reason on a quarantined message.
	HeaderReason = "Faregate-Reason"
	// HeaderDetail carries a human-readable explanation.
	HeaderDetail = "Faregate-Detail"
)

// EventSubject is the subject a terminal publishes its events on.
func EventSubject(operator, terminal string) string {
	return "faregate.events." + operator + "." + terminal
}

// AppliedSubject is where clearing announces a terminal's signed
// Confirmation: every sequence up to its watermark is durably applied or
// rejected, so the terminal may drop them from its outbox.
func AppliedSubject(terminal string) string { return "faregate.applied." + terminal }

// WatermarkSubject answers a terminal's request for a Confirmation, so a
// terminal that missed an announcement (offline, restarted) can ask. The
// request carries the terminal's own watermark in decimal.
func WatermarkSubject(terminal string) string { return "faregate.watermark." + terminal }

// TerminalInboxPrefix is the inbox prefix of a terminal's NATS connection:
// replies to it (JetStream publish acks, confirmations it asked for) arrive
// under it, and only that terminal may subscribe there.
func TerminalInboxPrefix(terminal string) string { return "_INBOX." + terminal }

// TerminalJSAPI is the JetStream API prefix of a terminal's connection
// (jetstream.NewWithAPIPrefix). Terminals are NATS users of an account of
// their own, without JetStream; clearing's account, which holds every
// stream, exports to it only the API subjects the watches below need, and
// the terminals' account imports them under this prefix. The server sends
// the answer to such a request back into the terminals' account, whatever
// reply subject the terminal named: a terminal cannot have it written
// into a bucket or onto another terminal's event subject, as it could
// while both were in one account (an outside red team's 1.88 million junk
// values in the deny list's bucket).
const TerminalJSAPI = "$FAREGATE.JS.API"

// GateListWatchSubjects are the JetStream API subjects (under TerminalJSAPI)
// a read-only watch of the gate-list buckets needs, and nothing more: the
// buckets' stream info (to bind to a bucket), creating and deleting
// consumers on those two streams only (an ordered consumer, which delivers
// into the terminal's inbox), and answering their flow control. No put,
// delete or purge (the $KV subjects), no other stream, no consumer
// listing.
func GateListWatchSubjects() []string {
	var out []string
	for _, b := range []string{DenyBucket, EnrolBucket} {
		stream := "KV_" + b
		out = append(out,
			TerminalJSAPI+".STREAM.INFO."+stream,
			TerminalJSAPI+".CONSUMER.CREATE."+stream+".>",
			TerminalJSAPI+".CONSUMER.DELETE."+stream+".*",
			"$JS.FC."+stream+".>")
	}
	return out
}

// JetStreamAPISubject is the subject in clearing's account that subject, a
// terminal's request under TerminalJSAPI, reaches: the same under $JS.API.
// Flow-control answers ($JS.FC) keep their subject.
func JetStreamAPISubject(subject string) string {
	if rest, ok := strings.CutPrefix(subject, TerminalJSAPI+"."); ok {
		return "$JS.API." + rest
	}
	return subject
}

// TerminalPermissions are the subjects a terminal's NATS user may publish to
// and subscribe to: its own event subject and confirmation request, what a
// read-only watch of the gate-list buckets needs (GateListWatchSubjects)
// and of its own keys in the face bucket (FaceWatchSubjects);
// its own confirmations and inbox (where its JetStream acks and the
// buckets' deliveries arrive). Nothing else: no other terminal's subjects,
// no other stream, no writing a bucket (its JetStream publishes are plain
// publishes whose acks come to its inbox). A consumer's delivery subject is
// in the request's body, which permissions cannot see: clearing deletes any
// consumer on the buckets that does not deliver into its creator's inbox
// (gatelists.go).
func TerminalPermissions(operator, terminal string) (publish, subscribe []string) {
	pub := append([]string{EventSubject(operator, terminal), WatermarkSubject(terminal)}, GateListWatchSubjects()...)
	return append(pub, FaceWatchSubjects(terminal)...),
		[]string{AppliedSubject(terminal), TerminalInboxPrefix(terminal) + ".>"}
}

// NATSPingInterval and NATSMaxPingsOut are how terminals and clearing find
// a dead NATS connection that was never closed (a frozen node, a cut that
// sends no reset): a ping every 5 s, given up after 3 unanswered, so the
// client reconnects to another node within about 20 s. nats.go's defaults
// (2 min, 2) held a frozen node's connections for about 4 minutes in an
// outside test, and clearing applied nothing meanwhile.
const (
	NATSPingInterval = 5 * time.Second
	NATSMaxPingsOut  = 3
)
