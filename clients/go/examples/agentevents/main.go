// Command agentevents reads one agent's events straight from Kafka, as any Kafka
// consumer may (docs/kafka-topics.md), and decodes their typed payloads.
//
//	GODEL_KAFKA=host:port GODEL_AGENT_ID=<uuid> go run ./examples/agentevents
//
// It reads godel.agent.events from the beginning (no consumer group: it commits
// nothing), decodes each record value as a godel.v1.Event, keeps the events of
// GODEL_AGENT_ID and prints one JSON line per event: its type, the payload message
// (the Event.data field its type names, checked against the message's
// godel.v1.event_type option), the agent id and the agent's status after the event,
// all read from the typed payload. It stops after the agent's GODEL_UNTIL event
// (default agent:delete); after GODEL_TIMEOUT seconds (default 60) without it, or
// on any error, it exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

const topic = "godel.agent.events"

// line is what the program prints for one event.
type line struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	AgentID string `json:"agentId"`
	Status  string `json:"status"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "agentevents:", err)
		os.Exit(1)
	}
}

func run() error {
	bootstrap, agentID := os.Getenv("GODEL_KAFKA"), os.Getenv("GODEL_AGENT_ID")
	if bootstrap == "" || agentID == "" {
		return errors.New("GODEL_KAFKA (host:port) and GODEL_AGENT_ID must be set")
	}
	until := os.Getenv("GODEL_UNTIL")
	if until == "" {
		until = "agent:delete"
	}
	timeout := 60 * time.Second
	if s := os.Getenv("GODEL_TIMEOUT"); s != "" {
		seconds, err := strconv.Atoi(s)
		if err != nil || seconds <= 0 {
			return fmt.Errorf("GODEL_TIMEOUT must be a positive number of seconds, not %q", s)
		}
		timeout = time.Duration(seconds) * time.Second
	}

	client, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := json.NewEncoder(os.Stdout)
	for {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("no %s of agent %s on %s within %s", until, agentID, topic, timeout)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return fmt.Errorf("fetch: %v", errs[0].Err)
		}
		done := false
		for _, record := range fetches.Records() {
			var event godelv1.Event
			if err := proto.Unmarshal(record.Value, &event); err != nil {
				continue // not a godel.v1.Event: skip
			}
			if event.GetMetadata().GetAgentId() != agentID {
				continue
			}
			data := payload(&event)
			if data == nil {
				continue // no typed payload for its type: skip
			}
			if err := out.Encode(line{
				Type:    event.GetType(),
				Message: string(data.ProtoReflect().Descriptor().Name()),
				AgentID: agentOf(data),
				Status:  statusOf(data).String(),
			}); err != nil {
				return err
			}
			done = done || event.GetType() == until
		}
		if done {
			return nil
		}
	}
}

// payload is the typed payload of an event: the message set in the Event.data
// oneof, when its godel.v1.event_type option is the event's type.
func payload(event *godelv1.Event) proto.Message {
	m := event.ProtoReflect()
	field := m.WhichOneof(m.Descriptor().Oneofs().ByName("data"))
	if field == nil {
		return nil
	}
	data := m.Get(field).Message().Interface()
	if proto.GetExtension(data.ProtoReflect().Descriptor().Options(), godelv1.E_EventType) != event.GetType() {
		return nil
	}
	return data
}

// transitioned is every lifecycle event's payload (AgentStarted, AgentPaused, ...).
type transitioned interface {
	GetTransition() *godelv1.AgentTransition
}

func agentOf(data proto.Message) string {
	switch d := data.(type) {
	case *godelv1.AgentSpawned:
		return d.GetAgent().GetId()
	case *godelv1.AgentDeleted:
		return d.GetAgentId()
	case *godelv1.AgentUsage:
		return d.GetAgentId()
	case transitioned:
		return d.GetTransition().GetAgentId()
	}
	return ""
}

func statusOf(data proto.Message) godelv1.AgentStatus {
	switch d := data.(type) {
	case *godelv1.AgentSpawned:
		return d.GetAgent().GetStatus()
	case *godelv1.AgentDeleted:
		return d.GetStatus()
	case transitioned:
		return d.GetTransition().GetToStatus()
	}
	return godelv1.AgentStatus_AGENT_STATUS_UNSPECIFIED
}
