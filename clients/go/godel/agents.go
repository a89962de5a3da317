package godel

import (
	"context"
	"crypto/rand"
	"fmt"
	"iter"

	"google.golang.org/protobuf/proto"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// Agents is the AgentService client (every generated method) with helpers.
type Agents struct {
	godelv1.AgentServiceClient
	events *Events
}

// Create creates an agent. A request without a request_id gets a fresh one, so that a retry
// after UNAVAILABLE cannot create the agent twice. A config with a command and no runtime
// runs on the "command" runtime.
func (a *Agents) Create(ctx context.Context, req *godelv1.CreateAgentRequest) (*godelv1.Agent, error) {
	req = proto.Clone(req).(*godelv1.CreateAgentRequest)
	if req.GetRequestId() == "" {
		req.RequestId = newRequestID()
	}
	if c := req.GetConfig(); c != nil && c.GetRuntime() == "" && len(c.GetCommand()) > 0 {
		c.Runtime = "command"
	}
	return a.CreateAgent(ctx, req)
}

// Get returns one agent.
func (a *Agents) Get(ctx context.Context, id string) (*godelv1.Agent, error) {
	return a.GetAgent(ctx, &godelv1.GetAgentRequest{Id: id})
}

// List yields every agent matching the filters of req, fetching pages as it goes (req's
// page_size sets the page size; its page_token is ignored).
func (a *Agents) List(ctx context.Context, req *godelv1.ListAgentsRequest) iter.Seq2[*godelv1.Agent, error] {
	if req == nil {
		req = &godelv1.ListAgentsRequest{}
	}
	return pages(ctx, func(ctx context.Context, token string) ([]*godelv1.Agent, string, error) {
		page := proto.Clone(req).(*godelv1.ListAgentsRequest)
		page.PageToken = token
		resp, err := a.ListAgents(ctx, page)
		return resp.GetAgents(), resp.GetNextPageToken(), err
	})
}

// Follow yields the agent's events, from its first one, as they happen, and ends after the
// event with which the agent ended for good (see Ended); an error ends it too (after being
// yielded).
func (a *Agents) Follow(ctx context.Context, agentID string) iter.Seq2[*godelv1.Event, error] {
	return func(yield func(*godelv1.Event, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		from := int64(0)
		sub := &godelv1.SubscribeEventsRequest{AgentId: agentID, FromSequence: &from}
		for ev, err := range a.events.Subscribe(ctx, sub) {
			if !yield(ev, err) || err != nil {
				return
			}
			if !endingTypes[ev.GetType()] {
				continue
			}
			last, err := a.lastEnding(ctx, agentID, ev.GetSequence())
			if err != nil {
				yield(nil, err)
				return
			}
			if last {
				return
			}
		}
	}
}

// endingTypes: the events after which an agent may have ended (or begun again).
var endingTypes = map[string]bool{
	"agent:complete": true, "agent:kill": true, "agent:error": true, "agent:restart": true,
}

// lastEnding says whether the event at seq ended the agent: the agent has ended and no later
// ending event is stored (a replay passes earlier failures that were retried).
func (a *Agents) lastEnding(ctx context.Context, agentID string, seq int64) (bool, error) {
	agent, err := a.Get(ctx, agentID)
	if err != nil || !Ended(agent) {
		return false, err
	}
	types := make([]string, 0, len(endingTypes))
	for t := range endingTypes {
		types = append(types, t)
	}
	later, err := a.events.QueryEvents(ctx, &godelv1.QueryEventsRequest{
		AgentId: agentID, Type: types, AfterSequence: seq, PageSize: 1,
	})
	if err != nil {
		return false, err
	}
	return len(later.GetEvents()) == 0, nil
}

// Ended says whether the agent is done for good: completed, killed, or failed with no retry
// to come.
func Ended(agent *godelv1.Agent) bool {
	switch agent.GetStatus() {
	case godelv1.AgentStatus_AGENT_STATUS_COMPLETED, godelv1.AgentStatus_AGENT_STATUS_KILLED:
		return true
	case godelv1.AgentStatus_AGENT_STATUS_FAILED:
		return agent.GetCompletedAt() != nil // a failure that will be retried has none yet
	}
	return false
}

// newRequestID is a random UUID (v4).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
