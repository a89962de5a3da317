// Package godel is the Go client of Godel: one connection to the gateway (or to a service),
// authentication on every call, page iterators, event subscriptions that resume after a
// disconnect, and errors that carry the server's google.rpc details.
//
//	c, err := godel.NewClient("127.0.0.1:7373", godel.WithAPIKey(os.Getenv("GODEL_API_KEY")))
//	if err != nil { ... }
//	defer c.Close()
//	agent, err := c.Agents.Create(ctx, &godelv1.CreateAgentRequest{
//		Task:   "write hello.txt",
//		Config: &godelv1.AgentConfig{Command: []string{"sh", "-c", "echo hi > hello.txt && git add . && git commit -qm hi"}},
//	})
//	for ev, err := range c.Agents.Follow(ctx, agent.GetId()) {
//		if err != nil { ... }
//		fmt.Println(ev.GetSequence(), ev.GetType())
//	}
//
// Every service has a field on [Client]: Agents and Events wrap their generated clients
// (all generated methods stay available on them) and add helpers; the other services are the
// generated clients of github.com/godel-ai/godel/gen/go/godel/v1 as they are.
//
// Failures are *[Error] values: errors.Is(err, godel.ErrNotFound) tests the code, errors.As
// gives the ErrorInfo reason and the BadRequest field violations.
package godel
