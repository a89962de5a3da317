// A user's first program with the Go client, built in a fresh module that got the client
// through `go get` from a module proxy: it creates an agent that commits, pages through the
// agents until it finds it, follows its events to the end, and meets a 400 and a 401. It
// prints one JSON object (what it saw) on stdout; any unexpected failure exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/godel-ai/godel/clients/go/godel"
	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

type report struct {
	AgentID         string   `json:"agentId"`
	Paged           int      `json:"paged"`
	Found           bool     `json:"found"`
	Events          []string `json:"events"`
	Sequences       []int64  `json:"sequences"`
	Status          string   `json:"status"`
	Commits         []string `json:"commits"`
	InvalidArgument bool     `json:"invalidArgument"`
	Violations      []string `json:"violations"`
	Unauthenticated bool     `json:"unauthenticated"`
	Message         string   `json:"unauthenticatedMessage"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "first-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr, key := os.Getenv("GODEL_ADDR"), os.Getenv("GODEL_API_KEY")
	c, err := godel.NewClient(addr, godel.WithAPIKey(key))
	if err != nil {
		return err
	}
	defer c.Close()

	var r report
	agent, err := c.Agents.Create(ctx, &godelv1.CreateAgentRequest{
		Task:   "hello from the go client",
		Label:  "go-first-agent",
		Config: &godelv1.AgentConfig{Command: []string{"sh", "-c", "echo go > go.txt && git add go.txt && git commit -qm go"}},
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	r.AgentID = agent.GetId()

	for a, err := range c.Agents.List(ctx, &godelv1.ListAgentsRequest{PageSize: 2, Label: "go-first-agent"}) {
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		r.Paged++
		if a.GetId() == r.AgentID {
			r.Found = true
		}
	}

	for ev, err := range c.Agents.Follow(ctx, r.AgentID) {
		if err != nil {
			return fmt.Errorf("follow: %w", err)
		}
		r.Events = append(r.Events, ev.GetType())
		r.Sequences = append(r.Sequences, ev.GetSequence())
	}
	agent, err = c.Agents.Get(ctx, r.AgentID)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	r.Status, r.Commits = agent.GetStatus().String(), agent.GetCommits()

	_, err = c.Agents.Create(ctx, &godelv1.CreateAgentRequest{Task: ""})
	var bad *godel.Error
	r.InvalidArgument = errors.Is(err, godel.ErrInvalidArgument) && errors.As(err, &bad)
	if bad != nil {
		for _, v := range bad.FieldViolations {
			r.Violations = append(r.Violations, v.Field)
		}
	}

	stranger, err := godel.NewClient(addr, godel.WithAPIKey("godel_sk_not-a-real-key-000000000000"))
	if err != nil {
		return err
	}
	defer stranger.Close()
	_, err = stranger.Agents.Get(ctx, r.AgentID)
	r.Unauthenticated = errors.Is(err, godel.ErrUnauthenticated)
	if err != nil {
		r.Message = err.Error()
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
