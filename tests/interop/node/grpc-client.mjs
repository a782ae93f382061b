// A gRPC client Lumi did not write: @grpc/grpc-js + @grpc/proto-loader on the generated .proto.
// usage: node grpc-client.mjs PROTO_FILE SERVICE ADDRESS CALLS_JSON
//   CALLS_JSON: [{"method": "Number", "request": {...}}, ...]
// prints one JSON line: [{"ok": response} | {"error": {code, message, status}}]; status is the
// google.rpc.Status decoded from grpc-status-details-bin (details unpacked by type).
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const [protoFile, serviceName, address, callsJson] = process.argv.slice(2);
const definition = protoLoader.loadSync(path.basename(protoFile), {
  includeDirs: [path.dirname(protoFile)],
  keepCase: true,
  longs: String,
  enums: String,
  bytes: String,
  defaults: true,
  oneofs: true,
});
const loaded = grpc.loadPackageDefinition(definition);
const Service = serviceName.split(".").reduce((o, k) => o[k], loaded);
const client = new Service(address, grpc.credentials.createInsecure());

// google.rpc.Status and ErrorInfo (google/rpc/*.proto), plus the well-known Any and Value.
const rich = new protobuf.Root();
for (const file of ["any", "struct", "wrappers"]) {
  rich.addJSON(protobuf.common[`google/protobuf/${file}.proto`].nested);
}
rich.define("google.rpc")
  .add(protobuf.Type.fromJSON("Status", { fields: {
    code: { type: "int32", id: 1 },
    message: { type: "string", id: 2 },
    details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
  } }))
  .add(protobuf.Type.fromJSON("ErrorInfo", { fields: {
    reason: { type: "string", id: 1 },
    domain: { type: "string", id: 2 },
    metadata: { keyType: "string", type: "string", id: 3 },
  } }));

function decodeStatus(metadata) {
  const raw = metadata.get("grpc-status-details-bin")[0];
  if (!raw) return null;
  const Status = rich.lookupType("google.rpc.Status");
  const status = Status.toObject(Status.decode(raw), { longs: String });
  status.details = (status.details || []).map((any) => {
    const type = any.type_url.split("/").pop();
    const T = rich.lookupType(type);
    return { type, value: T.toObject(T.decode(any.value), { longs: String }) };
  });
  return status;
}

function call(method, request) {
  return new Promise((resolve) => {
    client[method](request, { deadline: Date.now() + 10000 }, (err, response) => {
      if (err) {
        resolve({ error: { code: err.code, message: err.details, status: decodeStatus(err.metadata) } });
      } else {
        resolve({ ok: response });
      }
    });
  });
}

const results = [];
for (const { method, request } of JSON.parse(callsJson)) {
  results.push(await call(method, request));
}
client.close();
console.log(JSON.stringify(results));
