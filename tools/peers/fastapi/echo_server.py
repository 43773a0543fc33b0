"""The Python service a user would write instead of rpc-server's `/v2/models/echo/infer`:
FastAPI with pydantic models for the Open Inference Protocol's request and response.

    uvicorn echo_server:app --workers 2 --http httptools --loop uvloop --no-access-log

One worker process per core, uvloop and httptools: the fastest way uvicorn runs.
"""

from typing import Any, List, Optional

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Tensor(BaseModel):
    name: str
    shape: List[int]
    datatype: str
    data: List[Any]


class InferRequest(BaseModel):
    id: Optional[str] = None
    inputs: List[Tensor]


class InferResponse(BaseModel):
    model_name: str
    id: Optional[str] = None
    outputs: List[Tensor]


@app.post("/v2/models/echo/infer")
async def infer(request: InferRequest) -> InferResponse:
    tensor = request.inputs[0]
    output = Tensor(name="OUTPUT", shape=tensor.shape, datatype=tensor.datatype, data=tensor.data)
    return InferResponse(model_name="echo", id=request.id, outputs=[output])
