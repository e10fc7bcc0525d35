/* parpy._core.PipelineRun: one run of a native pipeline (parpy.Pipeline). */
#ifndef PARPY_ENGINE_PIPELINE_H
#define PARPY_ENGINE_PIPELINE_H

#include "parpy.h"

PyTypeObject *parpy_pipeline_type_new(PyObject *module);

#endif /* PARPY_ENGINE_PIPELINE_H */
