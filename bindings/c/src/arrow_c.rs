//! Export of record batches through the Arrow C Data Interface
//! (<https://arrow.apache.org/docs/format/CDataInterface.html>).
//!
//! Written here, on the arrow that deepflow-store re-exports, instead of turning on arrow's own
//! `ffi` feature: a feature change of arrow rebuilds arrow and all of DataFusion for every crate
//! of the workspace. Covers the types deepflow's tables and SQL results use (booleans,
//! integers, floats, decimals, dates, timestamps, strings, binaries, lists, structs); view and
//! dictionary columns of query results are cast to plain strings/binaries/values first.
#![allow(non_camel_case_types)]

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use deepflow_store::arrow::array::{Array, ArrayData, ArrayRef, StructArray};
use deepflow_store::arrow::compute::cast;
use deepflow_store::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deepflow_store::arrow::record_batch::RecordBatch;

/// `struct ArrowSchema` of the C Data Interface.
#[repr(C)]
pub struct FFI_ArrowSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut FFI_ArrowSchema,
    dictionary: *mut FFI_ArrowSchema,
    release: Option<unsafe extern "C" fn(*mut FFI_ArrowSchema)>,
    private_data: *mut c_void,
}

/// `struct ArrowArray` of the C Data Interface.
#[repr(C)]
pub struct FFI_ArrowArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut FFI_ArrowArray,
    dictionary: *mut FFI_ArrowArray,
    release: Option<unsafe extern "C" fn(*mut FFI_ArrowArray)>,
    private_data: *mut c_void,
}

const ARROW_FLAG_NULLABLE: i64 = 2;

struct SchemaPrivate {
    format: CString,
    name: CString,
    children: Vec<*mut FFI_ArrowSchema>,
}

struct ArrayPrivate {
    /// Keeps the buffers alive.
    _data: ArrayData,
    buffers: Vec<*const c_void>,
    children: Vec<*mut FFI_ArrowArray>,
}

fn format_of(dt: &DataType) -> Result<String, String> {
    let unit = |u: &TimeUnit| match u {
        TimeUnit::Second => 's',
        TimeUnit::Millisecond => 'm',
        TimeUnit::Microsecond => 'u',
        TimeUnit::Nanosecond => 'n',
    };
    Ok(match dt {
        DataType::Null => "n".into(),
        DataType::Boolean => "b".into(),
        DataType::Int8 => "c".into(),
        DataType::UInt8 => "C".into(),
        DataType::Int16 => "s".into(),
        DataType::UInt16 => "S".into(),
        DataType::Int32 => "i".into(),
        DataType::UInt32 => "I".into(),
        DataType::Int64 => "l".into(),
        DataType::UInt64 => "L".into(),
        DataType::Float16 => "e".into(),
        DataType::Float32 => "f".into(),
        DataType::Float64 => "g".into(),
        DataType::Utf8 => "u".into(),
        DataType::LargeUtf8 => "U".into(),
        DataType::Binary => "z".into(),
        DataType::LargeBinary => "Z".into(),
        DataType::Date32 => "tdD".into(),
        DataType::Date64 => "tdm".into(),
        DataType::Decimal128(p, s) => format!("d:{p},{s}"),
        DataType::Timestamp(u, tz) => format!("ts{}:{}", unit(u), tz.as_deref().unwrap_or("")),
        DataType::Duration(u) => format!("tD{}", unit(u)),
        DataType::List(_) => "+l".into(),
        DataType::LargeList(_) => "+L".into(),
        DataType::Struct(_) => "+s".into(),
        other => return Err(format!("type {other} is not supported by the C Data export")),
    })
}

fn export_schema(name: &str, dt: &DataType, nullable: bool) -> Result<FFI_ArrowSchema, String> {
    let format = CString::new(format_of(dt)?).map_err(|e| e.to_string())?;
    let name = CString::new(name.replace('\0', "")).map_err(|e| e.to_string())?;
    let fields: Vec<&Field> = match dt {
        DataType::Struct(fs) => fs.iter().map(|f| f.as_ref()).collect(),
        DataType::List(f) | DataType::LargeList(f) => vec![f.as_ref()],
        _ => Vec::new(),
    };
    let mut children = Vec::with_capacity(fields.len());
    for f in fields {
        match export_schema(f.name(), f.data_type(), f.is_nullable()) {
            Ok(c) => children.push(Box::into_raw(Box::new(c))),
            Err(e) => {
                for c in children {
                    // SAFETY: created just above by Box::into_raw, released and freed once.
                    unsafe { free_schema_child(c) };
                }
                return Err(e);
            }
        }
    }
    let mut private = Box::new(SchemaPrivate { format, name, children });
    Ok(FFI_ArrowSchema {
        format: private.format.as_ptr(),
        name: private.name.as_ptr(),
        metadata: std::ptr::null(),
        flags: if nullable { ARROW_FLAG_NULLABLE } else { 0 },
        n_children: private.children.len() as i64,
        children: private.children.as_mut_ptr(),
        dictionary: std::ptr::null_mut(),
        release: Some(release_schema_cb),
        private_data: Box::into_raw(private).cast(),
    })
}

/// Releases and frees a boxed child schema.
unsafe fn free_schema_child(c: *mut FFI_ArrowSchema) {
    // SAFETY: `c` is a live Box::into_raw pointer per the caller.
    unsafe {
        if let Some(r) = (*c).release {
            r(c);
        }
        drop(Box::from_raw(c));
    }
}

unsafe extern "C" fn release_schema_cb(s: *mut FFI_ArrowSchema) {
    if s.is_null() {
        return;
    }
    // SAFETY: `s` is a schema exported by export_schema (the only producer of this callback),
    // not released yet (release is set): private_data is our SchemaPrivate box.
    unsafe {
        if (*s).release.is_none() {
            return;
        }
        let private = Box::from_raw((*s).private_data.cast::<SchemaPrivate>());
        for &c in &private.children {
            free_schema_child(c);
        }
        drop(private);
        (*s).release = None;
        (*s).private_data = std::ptr::null_mut();
    }
}

fn export_array(data: ArrayData) -> Result<FFI_ArrowArray, String> {
    let validity = match data.nulls() {
        Some(n) if n.offset() != data.offset() => {
            return Err("null bitmap offset differs from the array offset".into());
        }
        Some(n) => n.buffer().as_ptr().cast::<c_void>(),
        None => std::ptr::null(),
    };
    let mut buffers: Vec<*const c_void> = Vec::new();
    match data.data_type() {
        DataType::Null => {}
        _ => {
            buffers.push(validity);
            buffers.extend(data.buffers().iter().map(|b| b.as_ptr().cast::<c_void>()));
        }
    }
    let mut children = Vec::with_capacity(data.child_data().len());
    for c in data.child_data() {
        match export_array(c.clone()) {
            Ok(a) => children.push(Box::into_raw(Box::new(a))),
            Err(e) => {
                for c in children {
                    // SAFETY: created just above by Box::into_raw, released and freed once.
                    unsafe { free_array_child(c) };
                }
                return Err(e);
            }
        }
    }
    let length = data.len() as i64;
    let null_count = data.null_count() as i64;
    let offset = data.offset() as i64;
    let mut private = Box::new(ArrayPrivate { _data: data, buffers, children });
    Ok(FFI_ArrowArray {
        length,
        null_count,
        offset,
        n_buffers: private.buffers.len() as i64,
        n_children: private.children.len() as i64,
        buffers: private.buffers.as_mut_ptr(),
        children: private.children.as_mut_ptr(),
        dictionary: std::ptr::null_mut(),
        release: Some(release_array_cb),
        private_data: Box::into_raw(private).cast(),
    })
}

unsafe fn free_array_child(c: *mut FFI_ArrowArray) {
    // SAFETY: `c` is a live Box::into_raw pointer per the caller.
    unsafe {
        if let Some(r) = (*c).release {
            r(c);
        }
        drop(Box::from_raw(c));
    }
}

unsafe extern "C" fn release_array_cb(a: *mut FFI_ArrowArray) {
    if a.is_null() {
        return;
    }
    // SAFETY: `a` is an array exported by export_array, not released yet: private_data is our
    // ArrayPrivate box.
    unsafe {
        if (*a).release.is_none() {
            return;
        }
        let private = Box::from_raw((*a).private_data.cast::<ArrayPrivate>());
        for &c in &private.children {
            free_array_child(c);
        }
        drop(private);
        (*a).release = None;
        (*a).private_data = std::ptr::null_mut();
    }
}

/// Calls an array's release callback if it has one (C `df_arrow_release`).
///
/// # Safety
/// `a` points at an ArrowArray.
pub unsafe fn release_array(a: *mut FFI_ArrowArray) {
    // SAFETY: per the contract.
    unsafe {
        if let Some(r) = (*a).release {
            r(a);
        }
        (*a).release = None;
    }
}

/// Calls a schema's release callback if it has one.
///
/// # Safety
/// `s` points at an ArrowSchema.
pub unsafe fn release_schema(s: *mut FFI_ArrowSchema) {
    // SAFETY: per the contract.
    unsafe {
        if let Some(r) = (*s).release {
            r(s);
        }
        (*s).release = None;
    }
}

/// The plain type a column is exported as (view and dictionary types are cast).
fn plain_type(dt: &DataType) -> Option<DataType> {
    match dt {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        DataType::Dictionary(_, v) => Some(plain_type(v).unwrap_or_else(|| v.as_ref().clone())),
        _ => None,
    }
}

/// Exports a batch as a struct array (one child per column) and its schema.
pub fn export(batch: RecordBatch) -> Result<(FFI_ArrowArray, FFI_ArrowSchema), String> {
    let batch = if batch.schema().fields().iter().any(|f| plain_type(f.data_type()).is_some()) {
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
            match plain_type(f.data_type()) {
                Some(t) => {
                    cols.push(cast(c, &t).map_err(|e| e.to_string())?);
                    fields.push(Field::new(f.name(), t, f.is_nullable()));
                }
                None => {
                    cols.push(c.clone());
                    fields.push(f.as_ref().clone());
                }
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())?
    } else {
        batch
    };
    let sa = StructArray::from(batch);
    let schema = export_schema("", sa.data_type(), false)?;
    match export_array(sa.into_data()) {
        Ok(array) => Ok((array, schema)),
        Err(e) => {
            let mut schema = schema;
            // SAFETY: the schema exported just above, released once.
            unsafe { release_schema(&mut schema) };
            Err(e)
        }
    }
}
