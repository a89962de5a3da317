package worker

import (
	"context"
	"errors"
	"math/rand/v2"
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

const (
	backoffStart        = 200 * time.Millisecond
	backoffMax          = 2 * time.Second
	keyRefusedMax       = 60 * time.Second
	welcomeTimeout      = 10 * time.Second
	defaultHeartbeatMS  = 5000
	minimumHeartbeatMS  = 10
	connectionQueueWake = 1
)

type item struct {
	runID string
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
	inflight  *item
	wake      chan struct{}
	refused   bool
}

func newConnection(addr string, w *Worker, client godelv1.WorkerServiceClient) *connection {
	return &connection{addr: addr, w: w, client: client, wake: make(chan struct{}, connectionQueueWake)}
}

func (c *connection) isLive() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live, c.replicaID
}

// send queues a message on the live stream; false (nothing queued) when it is down.
func (c *connection) send(runID string, req *godelv1.ConnectRequest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return false
	}
	c.queue = append(c.queue, item{runID, req})
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
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
			c.w.onResponse(c, resp)
		}
	}()
	go func() { // writer
		defer wg.Done()
		for {
			c.mu.Lock()
			if len(c.queue) == 0 {
				c.mu.Unlock()
				select {
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				case <-c.wake:
				}
				continue
			}
			it := c.queue[0]
			c.queue = c.queue[1:]
			c.inflight = &it
			c.mu.Unlock()
			if err := stream.Send(it.req); err != nil {
				errc <- err
				return
			}
			c.mu.Lock()
			c.inflight = nil
			c.mu.Unlock()
			if it.runID != "" {
				c.w.delivered(it.runID, it.req)
			}
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
				c.send("", &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Heartbeat{Heartbeat: c.w.heartbeat()}})
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

// down gives the run messages that were not written back to their runs' outboxes.
func (c *connection) down() {
	c.mu.Lock()
	c.live = false
	items := c.queue
	if c.inflight != nil {
		items = append([]item{*c.inflight}, items...)
	}
	c.queue, c.inflight = nil, nil
	c.mu.Unlock()
	unsent := map[string][]*godelv1.ConnectRequest{}
	var order []string
	for _, it := range items {
		if it.runID == "" {
			continue
		}
		if _, ok := unsent[it.runID]; !ok {
			order = append(order, it.runID)
		}
		unsent[it.runID] = append(unsent[it.runID], it.req)
	}
	for _, id := range order {
		c.w.requeue(id, unsent[id])
	}
}
