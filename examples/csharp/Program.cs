// A small C# client for a running Vakt: one allow, two denies with their
// reasons, and which system user to fetch a token for. It prints what
// `cargo run --release --example client` prints. See README.md beside it to run it.
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Vakt.V1;

const string Regnskap = "urn:altinn:accesspackage:regnskapsforer-med-signeringsrettighet";

var addr = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("VAKT_ADDR") ?? "127.0.0.1:50051";
using var channel = Open(addr);
var vakt = new Authorizer.AuthorizerClient(channel);

try
{
    foreach (var (employee, systemUser, client, why) in new[]
    {
        ("kari", "tk-regnskap", "310015156", "Kari (accounting team) for client Bakeri Brød AS"),
        ("kari", "tk-regnskap", "310020206", "Kari for Havbris AS, whose client link was removed"),
        ("randi", "rr-regnskap", "310021210", "Randi, Fjordfisk's auditor, as its accountant"),
    })
    {
        // A deadline on every call: a check that cannot be answered in time is a
        // denial for the caller, not a hang.
        var r = await vakt.AuthorizeAsync(
            new AuthorizeRequest
            {
                EmployeeId = employee,
                SystemUserId = systemUser,
                ClientOrgNumber = client,
                AccessPackage = Regnskap,
            },
            deadline: DateTime.UtcNow.AddSeconds(5));
        // Anything but an explicit ALLOW is a denial.
        var decision = r.Decision switch
        {
            Decision.Allow => "Allow",
            Decision.Deny => "Deny",
            var other => other.ToString(),
        };
        Console.WriteLine($"{why}:\n  {decision} (decision {r.DecisionId}, revision {r.Revision})");
        foreach (var reason in r.Reasons)
        {
            Console.WriteLine($"    {reason.PolicyId}: {reason.Message}");
        }
    }

    var users = await vakt.ResolveSystemUserAsync(
        new ResolveSystemUserRequest
        {
            EmployeeId = "kari",
            ClientOrgNumber = "310019194",
            AccessPackage = "urn:altinn:accesspackage:sykefravaer",
        },
        deadline: DateTime.UtcNow.AddSeconds(5));
    Console.WriteLine("System users Kari may use for Kaffebrenneriet AS with sykefravaer:");
    foreach (var s in users.SystemUsers)
    {
        Console.WriteLine($"  {s.Id} (external ref {s.ExternalRef}, {s.UserType})");
    }
}
catch (RpcException e)
{
    Console.Error.WriteLine($"vakt client: {e.StatusCode}: {e.Status.Detail}");
    return 1;
}
return 0;

// host:port (or http://host:port) over TCP; unix:PATH over the sidecar's Unix
// socket, through a handler that connects there instead of resolving a host.
static GrpcChannel Open(string addr)
{
    if (!addr.StartsWith("unix:"))
    {
        return GrpcChannel.ForAddress(addr.Contains("://") ? addr : "http://" + addr);
    }
    var rest = addr["unix:".Length..];
    var path = rest.StartsWith("//") ? rest[2..] : rest;
    var handler = new SocketsHttpHandler
    {
        ConnectCallback = async (_, cancel) =>
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancel);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    };
    return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler });
}
