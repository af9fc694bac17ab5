//! Generated code for the protobuf contracts in `proto/`.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod ml {
    tonic::include_proto!("rvc.ml.v1");
}

pub mod events {
    tonic::include_proto!("rvc.events.v1");
}

pub mod catalog {
    tonic::include_proto!("rvc.catalog.v1");
}
