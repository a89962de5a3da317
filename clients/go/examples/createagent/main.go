// Command createagent creates an agent over plain gRPC (h2c) and reads it back.
//
//	GODEL_ADDR=host:port GODEL_API_KEY=... go run ./examples/createagent
//
// It calls godel.v1.AgentService/CreateAgent (task "hello from go", label
// "go-client") with metadata x-api-key, then GetAgent with the returned id, and
// prints the agent as one line of protojson (camelCase names, enums as strings,
// unset fields included) on stdout. Any failure is printed to stderr and the exit
// code is 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // so protojson can print ErrorInfo, BadRequest, ... details
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "createagent:", err)
		// Error details (google.rpc.ErrorInfo, BadRequest, ...) if the server sent any.
		if st, ok := status.FromError(err); ok {
			for _, d := range st.Proto().GetDetails() {
				if b, jerr := protojson.Marshal(d); jerr == nil {
					fmt.Fprintln(os.Stderr, "createagent: detail:", string(b))
				}
			}
		}
		os.Exit(1)
	}
}

func run() error {
	addr := os.Getenv("GODEL_ADDR")
	if addr == "" {
		return errors.New("GODEL_ADDR (host:port) is not set")
	}
	apiKey := os.Getenv("GODEL_API_KEY")

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	client := godelv1.NewAgentServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if apiKey != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", apiKey)
	}

	created, err := client.CreateAgent(ctx, &godelv1.CreateAgentRequest{
		Task:  "hello from go",
		Label: "go-client",
	})
	if err != nil {
		return fmt.Errorf("CreateAgent: %w", err)
	}
	agent, err := client.GetAgent(ctx, &godelv1.GetAgentRequest{Id: created.GetId()})
	if err != nil {
		return fmt.Errorf("GetAgent %q: %w", created.GetId(), err)
	}

	out, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(agent)
	if err != nil {
		return fmt.Errorf("encode agent: %w", err)
	}
	fmt.Println(string(out))
	return nil
}
