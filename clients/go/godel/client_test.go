package godel

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// fakeEvents breaks the first stream after two events; the second stream sends one more and ends.
type fakeEvents struct {
	godelv1.UnimplementedEventServiceServer
	mu    sync.Mutex
	froms []int64
}

func (f *fakeEvents) SubscribeEvents(req *godelv1.SubscribeEventsRequest, s grpc.ServerStreamingServer[godelv1.SubscribeEventsResponse]) error {
	f.mu.Lock()
	f.froms = append(f.froms, req.GetFromSequence())
	call := len(f.froms)
	f.mu.Unlock()
	send := func(seq int64) error {
		return s.Send(&godelv1.SubscribeEventsResponse{Item: &godelv1.SubscribeEventsResponse_Event{
			Event: &godelv1.Event{Sequence: seq, Type: "agent:start"},
		}})
	}
	if call == 1 {
		_ = send(req.GetFromSequence() + 1)
		_ = send(req.GetFromSequence() + 2)
		return status.Error(codes.Unavailable, "event service restarting")
	}
	_ = send(req.GetFromSequence() + 1)
	return s.Send(&godelv1.SubscribeEventsResponse{Item: &godelv1.SubscribeEventsResponse_End{End: &godelv1.StreamEnd{}}})
}

type fakeAgents struct {
	godelv1.UnimplementedAgentServiceServer
	got chan metadata.MD
	ids chan string
}

func (f *fakeAgents) CreateAgent(ctx context.Context, req *godelv1.CreateAgentRequest) (*godelv1.Agent, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.got <- md
	f.ids <- req.GetRequestId()
	st, _ := status.New(codes.InvalidArgument, "bad request").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: "godel"},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "task", Description: "is required"}}},
	)
	return nil, st.Err()
}

func serve(t *testing.T, register func(*grpc.Server)) *Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c, err := NewClient("passthrough:///bufnet", WithAPIKey("godel_sk_test"),
		WithDialOptions(grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.DialContext(ctx)
		})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestSubscribeResumesAfterTheLastEvent(t *testing.T) {
	fake := &fakeEvents{}
	c := serve(t, func(s *grpc.Server) { godelv1.RegisterEventServiceServer(s, fake) })
	from := int64(10)
	var seqs []int64
	for ev, err := range c.Events.Subscribe(context.Background(), &godelv1.SubscribeEventsRequest{FromSequence: &from}) {
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		seqs = append(seqs, ev.GetSequence())
	}
	if want := []int64{11, 12, 13}; !slices.Equal(seqs, want) {
		t.Fatalf("events %v, want %v", seqs, want)
	}
	if want := []int64{10, 12}; !slices.Equal(fake.froms, want) {
		t.Fatalf("from_sequence of the calls %v, want %v (the reconnect resumes after the last event)", fake.froms, want)
	}
}

func TestErrorsAreTypedAndCallsAuthenticated(t *testing.T) {
	fake := &fakeAgents{got: make(chan metadata.MD, 1), ids: make(chan string, 1)}
	c := serve(t, func(s *grpc.Server) { godelv1.RegisterAgentServiceServer(s, fake) })
	_, err := c.Agents.Create(context.Background(), &godelv1.CreateAgentRequest{})
	if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrNotFound) {
		t.Fatalf("errors.Is: %v", err)
	}
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("errors.As: %T", err)
	}
	if ge.Reason != "INVALID_ARGUMENT" || len(ge.FieldViolations) != 1 || ge.FieldViolations[0].Field != "task" {
		t.Fatalf("details: %+v", ge)
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("status.Code: %v", status.Code(err))
	}
	if md := <-fake.got; len(md.Get("x-api-key")) != 1 || md.Get("x-api-key")[0] != "godel_sk_test" {
		t.Fatalf("x-api-key: %v", md)
	}
	if id := <-fake.ids; len(id) != 36 {
		t.Fatalf("request_id %q is not a UUID", id)
	}
}

func TestRetryPolicyCoversReadsAndIdempotentCreatesOnly(t *testing.T) {
	config := serviceConfig()
	for _, want := range []string{`"GetAgent"`, `"ListAgents"`, `"QueryEvents"`, `"CreateAgent"`} {
		if !strings.Contains(config, want) {
			t.Errorf("service config lacks %s", want)
		}
	}
	for _, not := range []string{`"KillAgent"`, `"SubscribeEvents"`, `"Connect"`} {
		if strings.Contains(config, not) {
			t.Errorf("service config retries %s", not)
		}
	}
}
