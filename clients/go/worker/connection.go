package worker

import (
	"context"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// One WorkerService.Connect stream to one agent-service replica, reconnected forever with
// jittered exponential backoff (services/godel_server/worker/connection.py): hello first, then
// the welcome, then heartbeats; messages about runs that were not written when the stream broke
// go back to their run's outbox.
//
// Contact: the replica acknowledges each heartbeat (HeartbeatAck). silence(replica id) is how
// long ago the newest heartbeat that replica acknowledged on this connection was written (the
// hello, until one is): past the replica's run lease (WorkerWelcome.run_lease_ms) the worker
// stops the runs that replica owns, because it may by then run them elsewhere. Heartbeats go
// ahead of the run messages queued on the stream, and the replica puts its acknowledgements
// ahead of its own run messages, so a burst of them (a thousand runs ending, a replica that reads
// slowly) does not pass for silence. A replica restarted under a new id at the same address is
// another replica: its acknowledgements renew nothing of the old one's.

const (
	backoffStart        = 200 * time.Millisecond
	backoffMax          = 2 * time.Second
	keyRefusedMax       = 60 * time.Second
	welcomeTimeout      = 10 * time.Second
	defaultHeartbeatMS  = 5000
	minimumHeartbeatMS  = 10
	connectionQueueWake = 1
	// Heartbeats whose send time is remembered for their acknowledgement.
	heartbeatsKept = 64
	// Replica ids (one per restart of a replica with a generated id) whose contact is remembered.
	replicasKept = 16
)

// never: the silence of a replica never heard from here (or forgotten).
const never = time.Duration(math.MaxInt64)

type item struct {
	runID string
	order uint64 // in the run's outbox
	req   *godelv1.ConnectRequest
}

type connection struct {
	addr   string
	w      *Worker
	client godelv1.WorkerServiceClient

	mu        sync.Mutex
	live      bool
	replicaID string
	queue     []item
	heartbeat *godelv1.ConnectRequest // written before queue; not yet stamped in heartbeatsSent
	inflight  *item
	wake      chan struct{}
	refused   bool
	// The replica's run lease (0: none), and per replica id when the newest heartbeat it
	// acknowledged (or the hello it welcomed) was written.
	runLease       time.Duration
	contact        map[string]time.Time
	heartbeatSeq   uint64
	heartbeatsSent map[uint64]time.Time
}

func newConnection(addr string, w *Worker, client godelv1.WorkerServiceClient) *connection {
	return &connection{addr: addr, w: w, client: client, wake: make(chan struct{}, connectionQueueWake),
		contact: map[string]time.Time{}, heartbeatsSent: map[uint64]time.Time{}}
}

func (c *connection) isLive() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live, c.replicaID
}

// send queues a message on the live stream; false (nothing queued) when it is down. runID and
// order name a run's message, given back to the run's outbox if the stream breaks first.
func (c *connection) send(runID string, order uint64, req *godelv1.ConnectRequest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return false
	}
	c.queue = append(c.queue, item{runID, order, req})
	c.wakeWriterLocked()
	return true
}

func (c *connection) wakeWriterLocked() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// silence: how long ago the newest heartbeat replica acknowledged here was written (never when
// it acknowledged nothing here), and the run lease of this connection's replica.
func (c *connection) silence(replica string, now time.Time) (silence, lease time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	contact, ok := c.contact[replica]
	if !ok {
		return never, c.runLease
	}
	return now.Sub(contact), c.runLease
}

// contactedLocked records contact with the current replica as of sent.
func (c *connection) contactedLocked(sent time.Time) {
	if last, ok := c.contact[c.replicaID]; !ok || sent.After(last) {
		c.contact[c.replicaID] = sent
	}
	for len(c.contact) > replicasKept {
		oldest := c.replicaID
		for id, t := range c.contact {
			if t.Before(c.contact[oldest]) {
				oldest = id
			}
		}
		delete(c.contact, oldest)
	}
}

func (c *connection) heartbeatAcked(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sent, ok := c.heartbeatsSent[seq]
	if !ok {
		return
	}
	c.contactedLocked(sent)
	for s := range c.heartbeatsSent {
		if s <= seq {
			delete(c.heartbeatsSent, s)
		}
	}
}

// sendHeartbeat puts a heartbeat ahead of the queued run messages, in place of one not yet
// written: the newer says all the older said.
func (c *connection) sendHeartbeat() {
	beat := c.w.heartbeat()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return
	}
	c.heartbeatSeq++
	beat.Seq = c.heartbeatSeq
	c.heartbeat = &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Heartbeat{Heartbeat: beat}}
	c.wakeWriterLocked()
}

// nextLocked takes what the writer writes next: the pending heartbeat, else the oldest queued
// message. A heartbeat is stamped as it is taken: the time it waited to be written is no silence
// of the replica's.
func (c *connection) nextLocked() (item, bool) {
	if beat := c.heartbeat; beat != nil {
		c.heartbeat = nil
		c.heartbeatsSent[beat.GetHeartbeat().GetSeq()] = time.Now()
		for len(c.heartbeatsSent) > heartbeatsKept {
			delete(c.heartbeatsSent, slices.Min(slices.Collect(maps.Keys(c.heartbeatsSent))))
		}
		return item{req: beat}, true
	}
	if len(c.queue) == 0 {
		return item{}, false
	}
	it := c.queue[0]
	c.queue = c.queue[1:]
	return it, true
}

func (c *connection) runForever(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		welcomed, err := c.session(ctx)
		refused := false
		if err != nil && ctx.Err() == nil {
			code := status.Code(err)
			refused = code == codes.Unauthenticated || code == codes.PermissionDenied
			if refused && !c.refused {
				logger.Error("the agent service refuses this worker's API key: no agent can run here until the worker has a valid key of role worker (GODEL_API_KEY)", "address", c.addr, "error", err.Error())
			} else if !refused {
				logger.Info("worker stream failed", "address", c.addr, "error", err.Error())
			}
			c.refused = refused
		}
		c.down()
		if welcomed {
			attempt = 0
		}
		ceiling := backoffMax
		if refused {
			ceiling = keyRefusedMax
		}
		d := min(ceiling, backoffStart<<min(attempt, 20))
		attempt++
		select {
		case <-ctx.Done():
		case <-time.After(d/2 + rand.N(d/2+1)):
		}
	}
}

// session runs one stream from hello to its end; welcomed says whether the replica welcomed us.
func (c *connection) session(ctx context.Context) (welcomed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.client.Connect(ctx)
	if err != nil {
		return false, err
	}
	helloSent := time.Now()
	if err := stream.Send(&godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Hello{Hello: c.w.hello()}}); err != nil {
		return false, err
	}
	timer := time.AfterFunc(welcomeTimeout, cancel)
	first, err := stream.Recv()
	timer.Stop()
	if err != nil {
		return false, err
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return false, errors.New("the replica did not send WorkerWelcome first")
	}
	interval := time.Duration(max(welcome.GetHeartbeatIntervalMs(), minimumHeartbeatMS)) * time.Millisecond
	if welcome.GetHeartbeatIntervalMs() == 0 {
		interval = defaultHeartbeatMS * time.Millisecond
	}
	c.mu.Lock()
	c.live, c.replicaID = true, welcome.GetReplicaId()
	c.runLease = time.Duration(max(welcome.GetRunLeaseMs(), 0)) * time.Millisecond
	c.contactedLocked(helloSent)
	clear(c.heartbeatsSent)
	c.mu.Unlock()
	if c.refused {
		logger.Info("the agent service accepts this worker's API key again", "address", c.addr)
		c.refused = false
	}
	logger.Info("worker connected", "address", c.addr, "replica", welcome.GetReplicaId())
	c.w.onWelcome(c)

	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // reader
		defer wg.Done()
		for {
			resp, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			if ack := resp.GetHeartbeatAck(); ack != nil {
				c.heartbeatAcked(ack.GetSeq())
				continue
			}
			c.w.onResponse(c, resp)
		}
	}()
	go func() { // writer
		defer wg.Done()
		for {
			c.mu.Lock()
			it, ok := c.nextLocked()
			if !ok {
				c.mu.Unlock()
				select {
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				case <-c.wake:
				}
				continue
			}
			c.inflight = &it
			c.mu.Unlock()
			if err := stream.Send(it.req); err != nil {
				errc <- err
				return
			}
			c.mu.Lock()
			c.inflight = nil
			c.mu.Unlock()
		}
	}()
	go func() { // heartbeats
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.sendHeartbeat()
			}
		}
	}()
	err = <-errc
	c.mu.Lock()
	c.live = false
	c.mu.Unlock()
	cancel()
	wg.Wait()
	return true, err
}

// down gives the run messages that were not written back to their runs' outboxes (a pending
// heartbeat is dropped: the next stream sends its own).
func (c *connection) down() {
	c.mu.Lock()
	c.live = false
	items := c.queue
	if c.inflight != nil {
		items = append([]item{*c.inflight}, items...)
	}
	c.queue, c.inflight, c.heartbeat = nil, nil, nil
	c.mu.Unlock()
	unsent := map[string][]*outboxItem{}
	var order []string
	for _, it := range items {
		if it.runID == "" {
			continue
		}
		if _, ok := unsent[it.runID]; !ok {
			order = append(order, it.runID)
		}
		unsent[it.runID] = append(unsent[it.runID], &outboxItem{order: it.order, req: it.req})
	}
	for _, id := range order {
		c.w.requeue(id, unsent[id])
	}
}
