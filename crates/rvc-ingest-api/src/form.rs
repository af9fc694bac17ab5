//! Reads the multipart product form while it streams in: limits are enforced chunk by
//! chunk (413 as soon as one is crossed, never buffering past it) and every field is parsed
//! once into its domain type.
use crate::config::Limits;
use crate::problem::Problem;
use actix_multipart::Multipart;
use futures::TryStreamExt;
use rvc_domain::{
    CategoryName, Currency, DomainError, ImageFormat, ImageLimits, Price, ProductName, Sku,
    SniffedImage,
};
use rvc_store::products::{NewProduct, StagedImage};

/// Largest text field we read (names are at most 128 characters).
const MAX_TEXT_FIELD: usize = 4096;
/// Parts besides the photos (5 known fields and a few unknown ones, which are ignored):
/// a form of thousands of tiny parts is refused instead of walked.
const MAX_OTHER_PARTS: usize = 16;

#[derive(Default)]
struct Raw {
    sku: Option<String>,
    name: Option<String>,
    category_name: Option<String>,
    price: Option<String>,
    currency: Option<String>,
    images: Vec<StagedImage>,
}

fn domain_problem(e: DomainError) -> Problem {
    match e {
        DomainError::Invalid { field, reason } => {
            Problem::invalid_field(field, format!("{field}: {reason}"))
        }
        DomainError::UnsupportedImage(d) => Problem::unsupported(d).with_field("images"),
        DomainError::ImageTooLarge(d) => {
            Problem::unprocessable("image-dimensions", d).with_field("images")
        }
    }
}

fn multipart_problem(e: actix_multipart::MultipartError) -> Problem {
    Problem::bad_request(format!("malformed multipart body: {e}"))
}

/// Parses the form. Unknown text fields are ignored (bounded in size); photos come in
/// fields named `images` (or `images[]`).
pub async fn read_product(mut payload: Multipart, limits: &Limits) -> Result<NewProduct, Problem> {
    let mut raw = Raw::default();
    let mut total: usize = 0;
    let image_limits = ImageLimits {
        max_width: limits.max_image_dimension,
        max_height: limits.max_image_dimension,
        ..ImageLimits::default()
    };
    let mut parts: usize = 0;
    while let Some(mut field) = payload.try_next().await.map_err(multipart_problem)? {
        parts += 1;
        if parts > limits.max_images + MAX_OTHER_PARTS {
            return Err(Problem::too_large(format!(
                "the form has more than {} parts",
                limits.max_images + MAX_OTHER_PARTS
            )));
        }
        let name = field.name().unwrap_or_default().to_owned();
        if name == "images" || name == "images[]" {
            if raw.images.len() >= limits.max_images {
                return Err(Problem::invalid_field(
                    "images",
                    format!("images: at most {} photos per product", limits.max_images),
                ));
            }
            let index = raw.images.len();
            let mut bytes: Vec<u8> = Vec::new();
            while let Some(chunk) = field.try_next().await.map_err(multipart_problem)? {
                if bytes.len() + chunk.len() > limits.max_image_bytes {
                    return Err(Problem::too_large(format!(
                        "images[{index}]: larger than {} bytes",
                        limits.max_image_bytes
                    ))
                    .with_field("images"));
                }
                total += chunk.len();
                if total > limits.max_total_bytes {
                    return Err(Problem::too_large(format!(
                        "photos: more than {} bytes in total",
                        limits.max_total_bytes
                    ))
                    .with_field("images"));
                }
                // Refuse a non-image at its first bytes instead of reading 10 MiB of it.
                if bytes.len() < 12 && bytes.len() + chunk.len() >= 12 {
                    let mut head = bytes.clone();
                    head.extend_from_slice(&chunk[..12 - bytes.len()]);
                    if ImageFormat::sniff(&head).is_none() {
                        return Err(Problem::unsupported(format!(
                            "images[{index}]: not a supported image; only JPEG, PNG and WebP are accepted"
                        ))
                        .with_field("images"));
                    }
                }
                bytes.extend_from_slice(&chunk);
            }
            if bytes.is_empty() {
                return Err(Problem::invalid_field(
                    "images",
                    format!("images[{index}]: the file is empty"),
                ));
            }
            let meta = SniffedImage::inspect(&bytes, image_limits).map_err(|e| {
                let mut p = domain_problem(e);
                p.detail = format!("images[{index}]: {}", p.detail);
                p
            })?;
            raw.images.push(StagedImage { bytes, meta });
        } else {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = field.try_next().await.map_err(multipart_problem)? {
                if buf.len() + chunk.len() > MAX_TEXT_FIELD {
                    return Err(Problem::too_large(format!(
                        "{name}: text fields are at most {MAX_TEXT_FIELD} bytes"
                    ))
                    .with_field(&name));
                }
                buf.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(buf).map_err(|_| {
                Problem::invalid_field(&name, format!("{name}: must be UTF-8 text"))
            })?;
            let slot = match name.as_str() {
                "sku" => &mut raw.sku,
                "name" => &mut raw.name,
                "category_name" => &mut raw.category_name,
                "price" => &mut raw.price,
                "currency" => &mut raw.currency,
                _ => continue,
            };
            if slot.is_some() {
                return Err(Problem::invalid_field(
                    &name,
                    format!("{name}: given more than once"),
                ));
            }
            *slot = Some(text);
        }
    }

    let sku = Sku::parse(&raw.sku.ok_or_else(|| Problem::missing_field("sku"))?)
        .map_err(domain_problem)?;
    let name = ProductName::parse(&raw.name.ok_or_else(|| Problem::missing_field("name"))?)
        .map_err(domain_problem)?;
    let category = CategoryName::parse(
        &raw.category_name
            .ok_or_else(|| Problem::missing_field("category_name"))?,
    )
    .map_err(domain_problem)?;
    let price = Price::parse(&raw.price.ok_or_else(|| Problem::missing_field("price"))?)
        .map_err(domain_problem)?;
    let currency = Currency::parse(raw.currency.as_deref().unwrap_or(&limits.default_currency))
        .map_err(domain_problem)?;
    if raw.images.is_empty() {
        return Err(Problem::missing_field("images"));
    }
    Ok(NewProduct {
        sku,
        name,
        category,
        price,
        currency,
        images: raw.images,
        traceparent: rvc_runtime::telemetry::current_traceparent(),
    })
}
