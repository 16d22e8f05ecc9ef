//! The decoders' Python objects, allocated and filled directly rather than through a Python
//! call each: `tuple.__new__(cls, values)` for a NamedTuple row built a temporary tuple and an
//! argument tuple and parsed them, and `object.__new__(cls)` plus one `setattr` per slot looked
//! each slot's descriptor up by name. Both were a large share of the objects' cost, which is
//! most of `decode_vehicle_batch`'s (docs/performance.md, "Fourth pass").
//!
//! Every class is checked once, when the module's API is fetched. A row class must be laid out
//! as a plain tuple: its C base `tuple`, no instance `__dict__`, no slots of its own (a
//! NamedTuple). A slots class must be what `object.__new__` would only allocate: its C base
//! `object`, no instance `__dict__`, not abstract, no `__setattr__` of its own, and each name a
//! writable object slot of its own inside the instance. A class that does not pass keeps the
//! Python calls, so a contract change can cost speed but never memory safety.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

/// The first base of `tp` that is not a class defined in Python: the C type whose layout and
/// `tp_new` its instances get (`tuple` for a NamedTuple, `object` for a plain slots class).
///
/// # Safety
/// `tp` must be a live type object.
unsafe fn static_base(mut tp: *mut ffi::PyTypeObject) -> *mut ffi::PyTypeObject {
    while !tp.is_null() && ((*tp).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE) != 0 {
        tp = (*tp).tp_base;
    }
    tp
}

/// A NamedTuple class of the contract (`contract.rows.VehicleRow`, ...).
pub(crate) struct RowClass {
    cls: Py<PyType>,
    fields: usize,
    /// Laid out as a tuple: allocated by its `tp_alloc` and filled with `PyTuple_SET_ITEM`.
    direct: bool,
    tuple_new: Py<PyAny>,
}

impl RowClass {
    pub(crate) fn new(cls: Bound<'_, PyAny>) -> PyResult<Self> {
        let py = cls.py();
        let cls = cls.cast_into::<PyType>()?;
        if !cls.is_subclass_of::<PyTuple>()? {
            return Err(PyTypeError::new_err(format!(
                "{cls} is not a NamedTuple class"
            )));
        }
        let fields = cls.getattr("_fields")?.len()?;
        let tp = cls.as_type_ptr();
        // SAFETY: `tp` is a live type object (held by `cls`); only its layout fields are read.
        // `tuple.__new__(cls)` refuses a class whose C base is not `tuple` itself (a struct
        // sequence, say, with state of its own): such a class keeps that call.
        let direct = unsafe {
            let tuple = &raw mut ffi::PyTuple_Type;
            static_base(tp) == tuple
                && (*tp).tp_basicsize == (*tuple).tp_basicsize
                && (*tp).tp_itemsize == (*tuple).tp_itemsize
                && (*tp).tp_dictoffset == 0
                && (*tp).tp_alloc.is_some()
        };
        let tuple_new = py
            .import("builtins")?
            .getattr("tuple")?
            .getattr("__new__")?;
        Ok(Self {
            cls: cls.unbind(),
            fields,
            direct,
            tuple_new: tuple_new.unbind(),
        })
    }

    /// Whether instances are built directly (false: through `tuple.__new__`).
    pub(crate) fn direct(&self, py: Python<'_>) -> (String, bool) {
        (self.cls.bind(py).to_string(), self.direct)
    }

    /// An instance holding `values` (one per field, in field order).
    pub(crate) fn make<'py>(
        &self,
        py: Python<'py>,
        values: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if values.len() != self.fields {
            return Err(PyValueError::new_err(format!(
                "{} values for the {} fields of {}",
                values.len(),
                self.fields,
                self.cls.bind(py)
            )));
        }
        let cls = self.cls.bind(py);
        if !self.direct {
            let tuple = PyTuple::new(py, values)?;
            return self.tuple_new.bind(py).call1((cls, tuple));
        }
        let tp = cls.as_type_ptr();
        // SAFETY: `direct` checked that instances are laid out as tuples, so `tp_alloc(tp, n)`
        // returns a tuple of n NULL items (or NULL with an exception set), and each item is
        // set once with a reference it steals. A GC pass between two items sees NULLs, which
        // tuple traversal skips; nothing else can see the object before it is returned.
        unsafe {
            let alloc = (*tp).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
            let obj = alloc(tp, values.len() as ffi::Py_ssize_t);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            for (i, value) in values.into_iter().enumerate() {
                ffi::PyTuple_SET_ITEM(obj, i as ffi::Py_ssize_t, value.into_ptr());
            }
            Ok(Bound::from_owned_ptr(py, obj))
        }
    }
}

/// A `__slots__` class of the contract (`contract.rows.FrameRows`) whose every slot the
/// builder sets.
pub(crate) struct SlotsClass {
    cls: Py<PyType>,
    names: Vec<Py<PyString>>,
    /// Each name's byte offset in an instance, when every one is a writable object slot
    /// defined by the class itself.
    offsets: Option<Vec<ffi::Py_ssize_t>>,
    object_new: Py<PyAny>,
}

impl SlotsClass {
    pub(crate) fn new(cls: Bound<'_, PyAny>, names: &[&str]) -> PyResult<Self> {
        let py = cls.py();
        let cls = cls.cast_into::<PyType>()?;
        let tp = cls.as_type_ptr();
        // SAFETY: layout fields of a live type object. What `object.__new__(cls)` checks or
        // does besides allocating must not apply: its C base is `object` (another base, a
        // `dict` say, would need its own initialisation), no instance `__dict__` to set up,
        // not abstract, and no `__setattr__` of its own that the slots' writes would bypass.
        let plain = unsafe {
            let object = &raw mut ffi::PyBaseObject_Type;
            let setattr = |t: *mut ffi::PyTypeObject| (*t).tp_setattro.map(|f| f as usize);
            static_base(tp) == object
                && (*tp).tp_dictoffset == 0
                && ((*tp).tp_flags & ffi::Py_TPFLAGS_IS_ABSTRACT) == 0
                && setattr(tp) == setattr(object)
                && (*tp).tp_alloc.is_some()
        };
        // SAFETY: as above.
        let size = unsafe { (*tp).tp_basicsize };
        let field = std::mem::size_of::<*mut ffi::PyObject>() as ffi::Py_ssize_t;
        let header = std::mem::size_of::<ffi::PyObject>() as ffi::Py_ssize_t;
        let mut offsets = plain.then(|| Vec::with_capacity(names.len()));
        for name in names {
            let descr = cls.getattr(*name)?;
            let d = descr.as_ptr();
            // SAFETY: `d` is live (held by `descr`); it is read as a member descriptor only
            // once its type says it is one.
            let offset = unsafe {
                let member_type = &raw mut ffi::PyMemberDescr_Type;
                if ffi::Py_TYPE(d) != member_type {
                    None
                } else {
                    let descr = d as *mut ffi::PyMemberDescrObject;
                    let member = (*descr).d_member;
                    let own = (*descr).d_common.d_type == tp;
                    let writable = ((*member).flags & ffi::Py_READONLY) == 0;
                    let offset = (*member).offset;
                    let inside = offset >= header && offset + field <= size;
                    (own && writable && inside && (*member).type_code == ffi::Py_T_OBJECT_EX)
                        .then_some(offset)
                }
            };
            match (offset, offsets.as_mut()) {
                (Some(o), Some(v)) => v.push(o),
                _ => offsets = None,
            }
        }
        let names = names
            .iter()
            .map(|n| PyString::intern(py, n).unbind())
            .collect();
        let object_new = py
            .import("builtins")?
            .getattr("object")?
            .getattr("__new__")?;
        Ok(Self {
            cls: cls.unbind(),
            names,
            offsets,
            object_new: object_new.unbind(),
        })
    }

    /// Whether instances are built directly (false: `object.__new__` and `setattr`).
    pub(crate) fn direct(&self, py: Python<'_>) -> (String, bool) {
        (self.cls.bind(py).to_string(), self.offsets.is_some())
    }

    /// An instance with `values` in the slots named at construction, in that order.
    pub(crate) fn make<'py>(
        &self,
        py: Python<'py>,
        values: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if values.len() != self.names.len() {
            return Err(PyValueError::new_err(format!(
                "{} values for the {} slots of {}",
                values.len(),
                self.names.len(),
                self.cls.bind(py)
            )));
        }
        let cls = self.cls.bind(py);
        let Some(offsets) = &self.offsets else {
            let obj = self.object_new.bind(py).call1((cls,))?;
            for (name, value) in self.names.iter().zip(values) {
                obj.setattr(name.bind(py), value)?;
            }
            return Ok(obj);
        };
        let tp = cls.as_type_ptr();
        // SAFETY: `offsets` holds, per name, the offset of an object slot this class defines
        // (checked at construction), so each address is a `PyObject*` field of the new
        // instance; `tp_alloc` zero-fills them. Each field is set once with a reference it
        // steals, dropping whatever it held (NULL here), as `PyMember_SetOne` does.
        unsafe {
            let alloc = (*tp).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
            let obj = alloc(tp, 0);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            for (&offset, value) in offsets.iter().zip(values) {
                let field = obj.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>();
                let old = std::ptr::replace(field, value.into_ptr());
                ffi::Py_XDECREF(old);
            }
            Ok(Bound::from_owned_ptr(py, obj))
        }
    }
}
