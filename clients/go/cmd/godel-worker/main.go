// Command godel-worker is a Godel worker written in Go: it connects to the agent-service
// replicas (WorkerService.Connect) and runs "command" agents in git worktrees, each in a
// bubblewrap sandbox. It advertises language=go, so an agent with
// config.workerSelector {"language": "go"} runs here. Settings are the Python worker's:
//
//	GODEL_WORKER_CONNECT=127.0.0.1:50051 GODEL_API_KEY=godel_sk_... godel-worker
//
// It stops on SIGTERM or SIGINT (what still runs is killed and reported failed), and exits 2
// when agents cannot be sandboxed here.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/godel-ai/godel/clients/go/worker"
)

func main() {
	cfg, err := worker.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "godel-worker:", err)
		os.Exit(2)
	}
	w, err := worker.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "godel-worker:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "godel-worker: the worker refuses to start without a sandbox:", err)
		os.Exit(2)
	}
}
