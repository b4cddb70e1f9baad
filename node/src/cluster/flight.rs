//! Query data between nodes over Arrow Flight: `DoGet` with a ticket naming a shard, a read
//! point, a tenant and a [`Fragment`]; the node runs the fragment on its replica of the shard
//! once that replica has applied the read point, and streams the answer as Arrow IPC.
//! Nothing else of Flight is served.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use firn_query::{Fragment, FragmentOutput};
use firn_storage::{ShardId, TenantId};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::Cluster;
use crate::cluster::peers::MAX_MESSAGE_BYTES;

/// How long one replica may take to answer a fragment.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replica waits to apply a read point before it says it is behind.
pub const CATCH_UP: Duration = Duration::from_secs(5);

/// What a `DoGet` ticket says.
#[derive(Debug, Serialize, Deserialize)]
pub struct FragmentTicket {
    pub shard: ShardId,
    pub applied: u64,
    pub tenant: TenantId,
    pub fragment: Fragment,
}

/// The Flight service of this node.
#[derive(Clone, Debug)]
pub struct FlightShards {
    cluster: Arc<Cluster>,
}

impl FlightShards {
    pub fn server(cluster: Arc<Cluster>) -> FlightServiceServer<Self> {
        FlightServiceServer::new(Self { cluster })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// A query error as a Flight status: client mistakes keep their code, so the coordinator
/// answers them as they are instead of trying another replica.
pub fn query_status(e: &firn_query::Error) -> Status {
    let message = crate::api::error::error_chain(e);
    match e {
        firn_query::Error::Selector { .. }
        | firn_query::Error::InvalidQuery(_)
        | firn_query::Error::ReadOnly(_)
        | firn_query::Error::TooManyRows { .. } => Status::invalid_argument(message),
        firn_query::Error::MemoryLimit { .. } => Status::resource_exhausted(message),
        firn_query::Error::Timeout { .. } => Status::deadline_exceeded(message),
        _ => Status::unavailable(message),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not served: Firn's Flight service answers DoGet of query fragments only"
    )))
}

#[tonic::async_trait]
impl FlightService for FlightShards {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket: FragmentTicket = serde_json::from_slice(&request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("not a fragment ticket: {e}")))?;
        let output = run_local(
            &self.cluster,
            ticket.shard,
            ticket.applied,
            &ticket.tenant,
            &ticket.fragment,
        )
        .await?;
        let plain = matches!(ticket.fragment, Fragment::Symbols { plain: true, .. });
        let output = output.for_wire(plain).map_err(|e| query_status(&e))?;
        let batches = futures::stream::iter(output.batches.into_iter().map(Ok));
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(output.schema)
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(batches)
            .map_err(|e| Status::internal(format!("encoding the answer failed: {e}")));
        Ok(Response::new(stream.boxed()))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented("Handshake")
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unimplemented("GetFlightInfo")
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unimplemented("GetSchema")
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unimplemented("DoPut")
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unimplemented("DoAction")
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unimplemented("ListActions")
    }
}

/// Runs a fragment on this node's replica of `shard`, once that replica has applied
/// `applied`.
pub async fn run_local(
    cluster: &Cluster,
    shard: ShardId,
    applied: u64,
    tenant: &TenantId,
    fragment: &Fragment,
) -> Result<FragmentOutput, Status> {
    let replica = cluster.replica(shard).ok_or_else(|| {
        Status::not_found(format!(
            "node {} holds no replica of shard {shard}",
            cluster.id
        ))
    })?;
    replica
        .raft
        .wait_applied(applied, CATCH_UP)
        .await
        .map_err(|e| Status::unavailable(format!("node {} is behind: {e}", cluster.id)))?;
    let scanned = crate::tenancy::metering::scanned_bytes(&replica.store, tenant, fragment);
    if scanned > 0 {
        let now = cluster.tenancy.now();
        cluster
            .tenancy
            .usage
            .record(tenant, now, |c| c.scanned_bytes += scanned);
    }
    replica
        .engine
        .run_fragment(tenant, fragment)
        .await
        .map_err(|e| query_status(&e))
}

/// Runs a fragment on `addr` over Flight and gathers its answer, at most `max_bytes` of it.
pub async fn fetch(
    cluster: &Cluster,
    addr: &str,
    ticket: &FragmentTicket,
    max_bytes: usize,
) -> Result<FragmentOutput, Status> {
    let channel = cluster
        .peers
        .channel(addr)
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut client = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let body = serde_json::to_vec(ticket).expect("tickets serialise");
    // A replica that stopped answering is replaced this soon (the coordinator's own
    // timeout bounds the whole query).
    let request = cluster.peers.request(
        Ticket {
            ticket: body.into(),
        },
        FETCH_TIMEOUT,
    );
    let stream = client.do_get(request).await?.into_inner();
    let mut decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
        stream.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
    );
    let mut batches = Vec::new();
    let mut bytes = 0usize;
    while let Some(batch) = decoded.next().await {
        let batch = batch.map_err(|e| match e {
            arrow_flight::error::FlightError::Tonic(s) => *s,
            other => Status::internal(other.to_string()),
        })?;
        bytes += batch.get_array_memory_size();
        if bytes > max_bytes {
            return Err(Status::resource_exhausted(format!(
                "a shard's answer passed {max_bytes} bytes; narrow the query"
            )));
        }
        batches.push(batch);
    }
    let schema = decoded
        .schema()
        .cloned()
        .or_else(|| batches.first().map(|b| b.schema()))
        .ok_or_else(|| Status::internal("a shard answered without a schema"))?;
    Ok(FragmentOutput::batches(schema, batches))
}
