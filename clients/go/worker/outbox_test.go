package worker

import (
	"slices"
	"testing"
	"time"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

func updateReq(state godelv1.RunState) *godelv1.ConnectRequest {
	return &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Update{Update: &godelv1.RunUpdate{RunId: "r", State: state}}}
}

func logsReq(msg string) *godelv1.ConnectRequest {
	return &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Logs{Logs: &godelv1.RunLogs{RunId: "r",
		Lines: []*godelv1.RunLogLine{{Message: msg}}}}}
}

// names: "RUNNING#2", "log:x" for each item, in order.
func names(items []*outboxItem) []string {
	var out []string
	for _, it := range items {
		if u := it.req.GetUpdate(); u != nil {
			out = append(out, describe([]*godelv1.RunUpdate{u}))
		} else {
			out = append(out, "log:"+it.req.GetLogs().GetLines()[0].GetMessage())
		}
	}
	return out
}

func TestOutboxKeepsUpdatesUntilAcknowledgedAndLogsOnce(t *testing.T) {
	o := &outbox{}
	o.add(updateReq(godelv1.RunState_RUN_STATE_STARTING))
	o.add(logsReq("a"))
	sent := time.Now()
	if got, want := names(o.take(sent)), []string{"STARTING#1", "log:a"}; !slices.Equal(got, want) {
		t.Fatalf("take %v, want %v", got, want)
	}
	o.add(updateReq(godelv1.RunState_RUN_STATE_RUNNING))
	if got, want := names(o.take(sent)), []string{"RUNNING#2"}; !slices.Equal(got, want) {
		t.Fatalf("take %v, want %v", got, want)
	}
	o.add(logsReq("b"))
	o.add(updateReq(godelv1.RunState_RUN_STATE_SUCCEEDED))
	if !o.ack(1) || o.unacknowledged() != 2 {
		t.Fatalf("after ack 1: %d unacknowledged, want 2", o.unacknowledged())
	}
	if o.overdue(sent.Add(resendAfter), resendAfter) || !o.overdue(sent.Add(resendAfter+time.Millisecond), resendAfter) {
		t.Error("RUNNING#2 is overdue only past resendAfter")
	}
	o.rewind() // the stream broke: what is unacknowledged goes again, in order, logs once
	if got, want := names(o.take(sent)), []string{"RUNNING#2", "log:b", "SUCCEEDED#3"}; !slices.Equal(got, want) {
		t.Fatalf("take after rewind %v, want %v", got, want)
	}
	if o.ack(1) {
		t.Error("a repeated acknowledgement forgot something")
	}
	if !o.ack(3) || o.len() != 0 {
		t.Errorf("after ack 3 the outbox holds %d messages", o.len())
	}
}

func TestOutboxRequeuesWhatAStreamDidNotWriteInItsPlace(t *testing.T) {
	o := &outbox{}
	o.add(logsReq("a"))
	o.add(updateReq(godelv1.RunState_RUN_STATE_RUNNING))
	taken := o.take(time.Now())
	o.add(logsReq("b"))
	o.requeue(taken)
	if got, want := names(o.take(time.Now())), []string{"log:a", "RUNNING#1", "log:b"}; !slices.Equal(got, want) {
		t.Errorf("take after requeue %v, want %v", got, want)
	}
}

func TestOutboxSupersedesAStateNotSentYetAndBoundsWhatIsInFlight(t *testing.T) {
	o := &outbox{}
	o.add(updateReq(godelv1.RunState_RUN_STATE_STARTING))
	o.add(updateReq(godelv1.RunState_RUN_STATE_RUNNING))
	o.add(updateReq(godelv1.RunState_RUN_STATE_FAILED))
	if got, want := names(o.take(time.Now())), []string{"RUNNING#2", "FAILED#3"}; !slices.Equal(got, want) {
		t.Fatalf("take %v, want %v", got, want)
	}
	o = &outbox{}
	for range outboxWindow + 1 {
		o.add(updateReq(godelv1.RunState_RUN_STATE_FAILED))
	}
	if n := len(o.take(time.Now())); n != outboxWindow {
		t.Errorf("%d taken, want the window (%d)", n, outboxWindow)
	}
	o.ack(1)
	if n := len(o.take(time.Now())); n != 1 {
		t.Errorf("%d taken after an acknowledgement, want 1", n)
	}
}
