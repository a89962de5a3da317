package godel

import (
	"context"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// Events is the EventService client (every generated method) with helpers.
type Events struct {
	godelv1.EventServiceClient
}

// Query yields the stored events matching req, page by page (req's page_token is ignored).
func (e *Events) Query(ctx context.Context, req *godelv1.QueryEventsRequest) iter.Seq2[*godelv1.Event, error] {
	if req == nil {
		req = &godelv1.QueryEventsRequest{}
	}
	return pages(ctx, func(ctx context.Context, token string) ([]*godelv1.Event, string, error) {
		page := proto.Clone(req).(*godelv1.QueryEventsRequest)
		page.PageToken = token
		resp, err := e.QueryEvents(ctx, page)
		return resp.GetEvents(), resp.GetNextPageToken(), err
	})
}

// Reconnect delays of Subscribe: jittered, doubling from resumeStart up to resumeMax.
const (
	resumeStart = 100 * time.Millisecond
	resumeMax   = 5 * time.Second
)

// Subscribe yields the events matching req as they are published (heartbeats are skipped).
// When the stream breaks (UNAVAILABLE, a reset connection, a server restart) it reconnects
// with backoff and resumes after the last event it yielded (from_sequence = its sequence), so
// no event is lost or repeated; a durable subscription (subscription_name) resumes from the
// server's cursor. It ends when the server ends the stream cleanly, when ctx is done, or after
// yielding an error that a reconnect cannot help (bad filters, a revoked key, ...). Stop
// ranging to cancel the call.
func (e *Events) Subscribe(ctx context.Context, req *godelv1.SubscribeEventsRequest) iter.Seq2[*godelv1.Event, error] {
	if req == nil {
		req = &godelv1.SubscribeEventsRequest{}
	}
	return func(yield func(*godelv1.Event, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		req := proto.Clone(req).(*godelv1.SubscribeEventsRequest)
		delay := resumeStart
		for {
			progressed, err := e.stream(ctx, req, yield)
			if err == nil {
				return // the server ended the stream, or the caller stopped
			}
			if !resumable(err) || ctx.Err() != nil {
				if ctx.Err() == nil {
					yield(nil, err)
				}
				return
			}
			if progressed {
				delay = resumeStart
			}
			wait := delay/2 + rand.N(delay/2+1)
			delay = min(2*delay, resumeMax)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// stream runs one SubscribeEvents call; it moves req.from_sequence past every event it
// yields. nil: the stream is over for good; otherwise the error that broke it.
func (e *Events) stream(ctx context.Context, req *godelv1.SubscribeEventsRequest, yield func(*godelv1.Event, error) bool) (progressed bool, err error) {
	s, err := e.SubscribeEvents(ctx, req)
	if err != nil {
		return false, err
	}
	for {
		item, err := s.Recv()
		if errors.Is(err, io.EOF) {
			// Ended without a StreamEnd: the gateway or a proxy cut it; go on from where it was.
			return progressed, ErrUnavailable
		}
		if err != nil {
			return progressed, err
		}
		switch it := item.GetItem().(type) {
		case *godelv1.SubscribeEventsResponse_Event:
			seq := it.Event.GetSequence()
			req.FromSequence = &seq
			progressed = true
			if !yield(it.Event, nil) {
				return progressed, nil
			}
		case *godelv1.SubscribeEventsResponse_End:
			if it.End.GetCode() == 0 {
				return progressed, nil
			}
			return progressed, &Error{Code: codes.Code(it.End.GetCode()), Message: it.End.GetMessage()}
		}
	}
}

// resumable: errors after which a new stream may succeed.
func resumable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}
