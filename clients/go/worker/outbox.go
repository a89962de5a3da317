package worker

import (
	"sort"
	"time"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// The messages of one run on their way to the run's owner replica
// (services/godel_server/worker/outbox.py, without its journal: this worker keeps them in
// memory only). Two kinds of message:
//   - Acknowledged (RunUpdate, RunUsage): numbered (seq 1, 2, ... per run), kept until the owner
//     acknowledges them (RunAck), sent again after a reconnect, an ADOPT or a long silence, never
//     dropped. While one has not left the worker yet, a newer usage of the same model is added
//     into it and a newer state supersedes a non-final one. At most outboxWindow are in flight.
//   - Best effort (log lines, session messages): sent once; while waiting, bounded
//     (outboxLimit), the oldest log batches dropped first.
//
// Every message takes the next number of one per-run order counter, so the order in which they
// were produced survives requeues and resends.

const (
	outboxLimit  = 10_000
	outboxWindow = 64
)

type outboxItem struct {
	order uint64
	req   *godelv1.ConnectRequest
	// Given to a stream at least once: the owner may have applied it, so it never changes again.
	handed bool
	sentAt time.Time
}

type outbox struct {
	lastOrder, lastSeq uint64
	waiting            []*outboxItem // not handed to a stream (or to be sent again), by order
	inFlight           []*outboxItem // acknowledged kinds handed to a stream, not acknowledged, by order
}

// acknowledged: the kinds of message the owner acknowledges (RunAck).
func acknowledged(req *godelv1.ConnectRequest) bool {
	return req.GetUpdate() != nil || req.GetUsage() != nil
}

func seqOf(req *godelv1.ConnectRequest) uint64 {
	if u := req.GetUpdate(); u != nil {
		return u.GetSeq()
	}
	return req.GetUsage().GetSeq()
}

func supersedable(req *godelv1.ConnectRequest) bool {
	u := req.GetUpdate()
	return u != nil && !terminal[u.GetState()]
}

func insertByOrder(items []*outboxItem, it *outboxItem) []*outboxItem {
	i := sort.Search(len(items), func(i int) bool { return items[i].order > it.order })
	return append(items[:i], append([]*outboxItem{it}, items[i:]...)...)
}

func (o *outbox) len() int { return len(o.waiting) + len(o.inFlight) }

func (o *outbox) unacknowledged() int {
	n := len(o.inFlight)
	for _, it := range o.waiting {
		if acknowledged(it.req) {
			n++
		}
	}
	return n
}

func (o *outbox) nextOrder() uint64 {
	o.lastOrder++
	return o.lastOrder
}

// add queues a message (the outbox takes it over); an acknowledged kind gets its seq here.
func (o *outbox) add(req *godelv1.ConnectRequest) {
	if acknowledged(req) {
		o.addAcknowledged(req)
	} else {
		o.waiting = append(o.waiting, &outboxItem{order: o.nextOrder(), req: req})
	}
	o.bound()
}

func (o *outbox) addAcknowledged(req *godelv1.ConnectRequest) {
	if o.mergeUsage(req) {
		return
	}
	if supersedable(req) {
		kept := o.waiting[:0]
		for _, it := range o.waiting {
			if it.handed || !supersedable(it.req) {
				kept = append(kept, it)
			}
		}
		o.waiting = kept
	}
	o.lastSeq++
	if u := req.GetUpdate(); u != nil {
		u.Seq = o.lastSeq
	} else {
		req.GetUsage().Seq = o.lastSeq
	}
	o.waiting = append(o.waiting, &outboxItem{order: o.nextOrder(), req: req})
}

// mergeUsage adds a usage into the newest waiting usage of the same model not handed yet.
func (o *outbox) mergeUsage(req *godelv1.ConnectRequest) bool {
	u := req.GetUsage()
	if u == nil {
		return false
	}
	for i := len(o.waiting) - 1; i >= 0; i-- {
		queued := o.waiting[i].req.GetUsage()
		if !o.waiting[i].handed && queued != nil && queued.GetModel() == u.GetModel() {
			queued.PromptTokens += u.GetPromptTokens()
			queued.CompletionTokens += u.GetCompletionTokens()
			return true
		}
	}
	return false
}

// bound drops the oldest log batches (then session messages) past outboxLimit.
func (o *outbox) bound() {
	for len(o.waiting) > outboxLimit {
		if !o.dropFirst(isLogs) && !o.dropFirst(isSessionMessage) {
			return
		}
	}
}

func isLogs(req *godelv1.ConnectRequest) bool           { return req.GetLogs() != nil }
func isSessionMessage(req *godelv1.ConnectRequest) bool { return req.GetSessionMessage() != nil }

func (o *outbox) dropFirst(kind func(*godelv1.ConnectRequest) bool) bool {
	for i, it := range o.waiting {
		if kind(it.req) {
			o.waiting = append(o.waiting[:i], o.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// take hands what to write to the owner's stream now, oldest first; the acknowledged kinds
// among them stay in flight until acknowledged or rewound.
func (o *outbox) take(now time.Time) []*outboxItem {
	var out []*outboxItem
	for _, it := range o.waiting {
		if acknowledged(it.req) {
			if len(o.inFlight) >= outboxWindow {
				break // everything after it waits too, to keep the order
			}
			it.handed, it.sentAt = true, now
			o.inFlight = insertByOrder(o.inFlight, it)
		}
		out = append(out, it)
	}
	o.waiting = append([]*outboxItem(nil), o.waiting[len(out):]...)
	return out
}

// requeue puts back what a broken stream did not write, in its place; what it did write and
// was not acknowledged goes back too (rewind).
func (o *outbox) requeue(items []*outboxItem) {
	for _, it := range items {
		if !acknowledged(it.req) { // an acknowledged kind is still in flight: rewind puts it back
			o.waiting = insertByOrder(o.waiting, it)
		}
	}
	o.rewind()
	o.bound()
}

// rewind: the stream the in-flight messages went to is gone, or the run has a new owner; they
// are sent again (the owner ignores what it applied already).
func (o *outbox) rewind() {
	for _, it := range o.inFlight {
		o.waiting = insertByOrder(o.waiting, it)
	}
	o.inFlight = nil
}

// overdue: a message in flight has waited longer than after for its acknowledgement.
func (o *outbox) overdue(now time.Time, after time.Duration) bool {
	for _, it := range o.inFlight {
		if now.Sub(it.sentAt) > after {
			return true
		}
	}
	return false
}

// ack forgets the acknowledged messages up to seq; true when something was forgotten.
func (o *outbox) ack(seq uint64) bool {
	before := o.len()
	unacked := func(it *outboxItem) bool { return !acknowledged(it.req) || seqOf(it.req) > seq }
	o.inFlight = keep(o.inFlight, unacked)
	o.waiting = keep(o.waiting, unacked)
	return o.len() != before
}

func keep(items []*outboxItem, pred func(*outboxItem) bool) []*outboxItem {
	var out []*outboxItem
	for _, it := range items {
		if pred(it) {
			out = append(out, it)
		}
	}
	return out
}
