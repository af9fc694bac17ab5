//! Generated code for the protobuf contracts in `proto/`.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod ml {
    tonic::include_proto!("rvc.ml.v1");

    impl From<(f32, f32, f32, f32)> for Box {
        /// A box from `(x, y, width, height)` in fractions of the image.
        fn from((x, y, width, height): (f32, f32, f32, f32)) -> Self {
            Box {
                x,
                y,
                width,
                height,
            }
        }
    }
}

pub mod events {
    tonic::include_proto!("rvc.events.v1");
}

pub mod catalog {
    tonic::include_proto!("rvc.catalog.v1");
}

/// Encoded `FileDescriptorSet` of every contract in `proto/`, for gRPC server reflection.
#[cfg(feature = "reflection")]
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rvc_descriptor.bin"));
